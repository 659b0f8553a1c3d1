import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { loadAgentConfig } from '../../device-agent/agent-config.ts';
import { runAgent } from '../../device-agent/main.ts';
import type { DeviceAgent } from '../../device-agent/runtime/device-agent.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { eventually, type TestServer } from './test-server.ts';

/**
 * The real device agent, started in the test's process through its composition root (`runAgent`):
 * the same MQTT session, outbox, update manager and app-bundle strategy as `boardfleet agent`,
 * without a process per device. Its MQTT connection goes through a relay the test can cut, as a
 * pulled network cable would (the broker then publishes the agent's last will).
 */
export class InProcessAgent {
  readonly dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-'));
  /** Every desired state the agent took up, in order (its own 'desired' event). */
  readonly desiredSeen: DesiredState[] = [];
  private agent: DeviceAgent | null = null;
  private relay: MqttRelay | null = null;

  constructor(
    readonly deviceId: string,
    readonly secret: string,
    private readonly options: { serverUrl: string; mqttUrl: string; board: string },
  ) {}

  /** The update lock: while it exists the agent downloads and verifies but does not activate. */
  get updateLock(): string {
    return join(this.dataDir, 'update.lock');
  }

  holdUpdates(): void {
    writeFileSync(this.updateLock, '');
  }

  releaseUpdates(): void {
    rmSync(this.updateLock, { force: true });
  }

  /** Starts the agent (again, on the same data dir) against the given server. */
  async start(target: { serverUrl: string; mqttUrl: string } = this.options): Promise<void> {
    this.relay = await MqttRelay.start(new URL(target.mqttUrl));
    const config = loadAgentConfig({
      server: target.serverUrl,
      mqtt: [this.relay.url],
      deviceId: this.deviceId,
      secret: this.secret,
      name: this.deviceId,
      board: this.options.board,
      dataDir: this.dataDir,
      heartbeat: 1,
      keepalive: 5,
    });
    this.agent = await runAgent(config, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }));
    this.agent.on('desired', (desired) => this.desiredSeen.push(desired));
  }

  get connected(): boolean {
    return this.agent?.connected ?? false;
  }

  /** Cuts the agent's network: its connection drops without a DISCONNECT and it cannot reconnect. */
  async cutNetwork(): Promise<void> {
    await this.relay?.close();
  }

  /** Stops the agent cleanly (it says goodbye) and its app. */
  async stop(): Promise<void> {
    await this.agent?.stop();
    this.agent = null;
    await this.relay?.close();
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A TCP relay to the broker whose close() ends every relayed connection and refuses new ones. */
class MqttRelay {
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(broker: URL): Promise<MqttRelay> {
    const server = createServer();
    const relay = new MqttRelay(server);
    server.on('connection', (device) => {
      const upstream = connect(Number(broker.port), broker.hostname);
      for (const socket of [device, upstream]) {
        relay.sockets.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          relay.sockets.delete(socket);
          device.destroy();
          upstream.destroy();
        });
      }
      device.pipe(upstream);
      upstream.pipe(device);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return relay;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

/**
 * Real agents (in this process) for `count` new devices tagged `tag`, each registered through the
 * API; resolves once all are online with their inventory stored, as a rollout picks each device's
 * artifact by the board in it. `beforeStart` prepares an agent (e.g. holds its updates).
 */
export async function startInProcessFleet(
  server: TestServer,
  options: { tag: string; count: number; board: string; beforeStart?: (agent: InProcessAgent) => void },
): Promise<InProcessAgent[]> {
  const { tag, count, board } = options;
  const agents: InProcessAgent[] = [];
  for (let index = 0; index < count; index++) {
    const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: `${tag}-${index}`,
      tags: [tag],
    });
    const agent = new InProcessAgent(body.device.id, body.secret, {
      serverUrl: server.httpUrl,
      mqttUrl: server.mqttUrl,
      board,
    });
    agents.push(agent);
    options.beforeStart?.(agent);
  }
  try {
    for (const agent of agents) await agent.start();
  } catch (error) {
    await Promise.all(agents.map((agent) => agent.dispose()));
    throw error;
  }
  await eventually(
    `${count} ${tag} agents online with their inventory`,
    async () => {
      const { body } = await server.api<{
        devices: Array<{ online: boolean; inventory: { board: string } }>;
      }>('GET', `/api/v1/devices?tag=${tag}&limit=100`);
      return (
        body.devices.length === count && body.devices.every((d) => d.online && d.inventory?.board === board)
      );
    },
    30_000,
  );
  await server.ingest.drain();
  return agents;
}
