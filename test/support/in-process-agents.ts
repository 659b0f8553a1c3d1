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
