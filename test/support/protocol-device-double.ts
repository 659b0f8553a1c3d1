import type { MqttClient } from 'mqtt';
import { decodePayload, encodePayload } from '../../protocol/codec.ts';
import {
  type Command,
  DEPLOYMENT_EVENT_TYPE,
  DeploymentReport,
  type DesiredState,
} from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import { connectDevice } from './mqtt-device.ts';

/**
 * `lose-last`: succeeds, but its last report is lost on the way (as with a replica that died
 * before storing it) until the server asks for it again with a `report` command.
 */
export type DeploymentScript = 'succeed' | 'fail' | 'hang' | 'lose-last';

interface SentReport {
  deploymentId: string;
  state: DeploymentReport;
  message?: string;
}

/**
 * A protocol-level double of a device agent, named as such: it speaks the wire contract (presence,
 * inventory, heartbeats, desired state, deployment events) but installs nothing, and the reasons
 * it reports are the test's own words. For tests of what the server shows; the rollout engine's
 * contract suite runs against the real agent (in-process-agents.ts) instead.
 */
export class ProtocolDeviceDouble {
  readonly desiredSeen: DesiredState[] = [];
  readonly commandsSeen: Command[] = [];
  private client!: MqttClient;
  /** Its last deployment report, sent again on a `report` command as the agent does. */
  private lastReport: SentReport | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private eventCounter = 0;

  constructor(
    readonly deviceId: string,
    private readonly secret: string,
    private readonly board: string,
    public script: DeploymentScript = 'succeed',
  ) {}

  async connect(mqttUrl: string): Promise<void> {
    const presence = (state: 'online' | 'offline') =>
      encodePayload('presence', {
        state,
        reason: state === 'online' ? 'started' : 'connection-lost',
        at: Date.now(),
      });
    this.client = await connectDevice(mqttUrl, {
      clientId: this.deviceId,
      username: this.deviceId,
      password: this.secret,
      clean: false,
      will: {
        topic: deviceTopic(this.deviceId, 'presence'),
        payload: Buffer.from(presence('offline')),
        qos: 1,
        retain: true,
      },
    });
    this.client.on('message', (topic, payload) => {
      if (topic === deviceTopic(this.deviceId, 'commands')) {
        const command = decodePayload('commands', payload);
        if (command.ok) void this.onCommand(command.value);
        return;
      }
      const decoded = decodePayload('desired', payload);
      if (decoded.ok) void this.onDesired(decoded.value);
    });
    await this.client.publishAsync(deviceTopic(this.deviceId, 'presence'), presence('online'), {
      qos: 1,
      retain: true,
    });
    await this.client.publishAsync(
      deviceTopic(this.deviceId, 'inventory'),
      encodePayload('inventory', {
        board: this.board,
        os: 'double',
        kernel: 'double',
        architecture: 'arm64',
        agentVersion: '0.0.0-double',
        hostname: this.deviceId,
        slots: [],
        attachedBoards: [],
        at: Date.now(),
      }),
      { qos: 1, retain: true },
    );
    this.beat();
    this.heartbeat = setInterval(() => this.beat(), 300);
    await this.client.subscribeAsync(
      [deviceTopic(this.deviceId, 'desired'), deviceTopic(this.deviceId, 'commands')],
      { qos: 1 },
    );
  }

  private async onCommand(command: Command): Promise<void> {
    this.commandsSeen.push(command);
    if (command.type === 'report' && this.lastReport) await this.sendReport(this.lastReport);
  }

  private sendReport(report: SentReport) {
    return this.client.publishAsync(
      deviceTopic(this.deviceId, 'events'),
      encodePayload('events', {
        id: `${this.deviceId}-${++this.eventCounter}`,
        at: Date.now(),
        type: DEPLOYMENT_EVENT_TYPE,
        deploymentId: report.deploymentId,
        ...(report.message ? { message: report.message } : {}),
        data: { state: report.state },
      }),
      { qos: 1 },
    );
  }

  private beat(): void {
    this.client.publish(
      deviceTopic(this.deviceId, 'health'),
      encodePayload('health', {
        at: Date.now(),
        uptimeSeconds: 1,
        load: [0, 0, 0],
        memory: { totalBytes: 1, availableBytes: 1 },
        disk: { totalBytes: 1, freeBytes: 1 },
        cpuTemperatureCelsius: null,
        agentRssBytes: 1,
      }),
      { qos: 0 },
    );
  }

  private async onDesired(desired: DesiredState): Promise<void> {
    this.desiredSeen.push(desired);
    const deployment = desired.deployment;
    if (!deployment || deployment.rollbackOrder || this.script === 'hang') return;
    const report = async (
      state: DeploymentReport,
      { message, lost = false } = {} as { message?: string; lost?: boolean },
    ) => {
      this.lastReport = { deploymentId: deployment.id, state, ...(message ? { message } : {}) };
      if (!lost) await this.sendReport(this.lastReport);
    };
    await report(DeploymentReport.Downloading);
    await report(DeploymentReport.Installing);
    if (this.script === 'fail')
      await report(DeploymentReport.Failed, { message: 'health check failed: app exited with status 1' });
    else await report(DeploymentReport.CommittedOnDevice, { lost: this.script === 'lose-last' });
  }

  /** Drops the connection without DISCONNECT: the broker publishes the last-will (offline). */
  crash(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.client.stream.destroy();
  }

  async close(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.client.endAsync(true);
  }
}
