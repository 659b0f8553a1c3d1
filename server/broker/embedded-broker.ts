import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { MAX_PAYLOAD_BYTES } from '../../protocol/topics.ts';
import { listenOrExplain } from '../common/listen.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { DeviceAuthenticator } from './device-authenticator.ts';
import {
  isAcceptableClientIdentity,
  mayDevicePublish,
  mayDeviceSubscribe,
  mayServerUse,
} from './topic-acl.ts';

export const SERVER_MQTT_USERNAME = 'boardfleet-server';

const BAD_CREDENTIALS = 4;
/** Time for the broker to hand already-acknowledged messages to the server's session. */
const IN_FLIGHT_GRACE_MS = 200;
const IDENTIFIER_REJECTED = 2;

function authError(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** Aedes inside the server process, with device authentication and per-device topic ACLs. */
export class EmbeddedBroker {
  private aedes!: Aedes;
  private server!: Server;
  /**
   * Authenticated server connections (their topics are not device topics). Kept by connection, not
   * by client id: a reconnect takes over the id, and closing the old connection must not make the
   * new one a stranger.
   */
  private readonly serverClients = new WeakSet<Client>();

  constructor(
    private readonly options: {
      host: string;
      port: number;
      serverSecret: string;
      authenticator: DeviceAuthenticator;
      metrics: ServerMetrics;
      logger: Logger;
    },
  ) {}

  async start(): Promise<number> {
    const { authenticator, metrics, logger } = this.options;
    const refuse = (kind: string, message: string, fields: object) => {
      metrics.refusedClients.inc({ kind });
      logger.warn(fields, message);
    };
    this.aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        const secret = password?.toString() ?? '';
        if (username === SERVER_MQTT_USERNAME) {
          const ok = safeEqual(secret, this.options.serverSecret);
          if (ok) this.serverClients.add(client);
          else refuse('connect', 'server credential refused', { clientId: client.id });
          done(ok ? null : authError(BAD_CREDENTIALS, 'bad credentials'), ok);
          return;
        }
        if (!isAcceptableClientIdentity(client.id, username)) {
          refuse('connect', 'client id/username refused', { clientId: client.id, username });
          done(authError(IDENTIFIER_REJECTED, 'client id must equal a valid device id'), false);
          return;
        }
        authenticator.authenticate(client.id, secret).then(
          (ok) => {
            if (!ok) refuse('connect', 'device credentials refused', { deviceId: client.id });
            done(ok ? null : authError(BAD_CREDENTIALS, 'bad credentials'), ok);
          },
          (error: unknown) => {
            logger.error({ err: error, deviceId: client.id }, 'authentication failed');
            done(authError(3, 'server unavailable'), false);
          },
        );
      },
      authorizePublish: (client, packet, done) => {
        if (!client) return done(null);
        if (packet.payload.length > MAX_PAYLOAD_BYTES) {
          metrics.invalidPayloads.inc({ channel: 'any', reason: 'oversized' });
          refuse('publish', 'oversized publish refused', {
            clientId: client.id,
            bytes: packet.payload.length,
          });
          return done(new Error('payload too large'));
        }
        const allowed = this.serverClients.has(client)
          ? mayServerUse(packet.topic)
          : mayDevicePublish(client.id, packet.topic);
        if (!allowed) refuse('publish', 'publish refused', { clientId: client.id, topic: packet.topic });
        done(allowed ? null : new Error('not authorised'));
      },
      authorizeSubscribe: (client, subscription, done) => {
        const allowed = this.serverClients.has(client)
          ? mayServerUse(subscription.topic)
          : mayDeviceSubscribe(client.id, subscription.topic);
        if (!allowed) {
          refuse('subscribe', 'subscription refused', { clientId: client.id, topic: subscription.topic });
          // A null subscription makes Aedes answer SUBACK 0x80 (failure) instead of dropping the client.
          return done(null, null);
        }
        done(null, subscription);
      },
    });
    this.aedes.on('client', (client) => this.updateConnected(client, +1));
    this.aedes.on('clientDisconnect', (client) => this.updateConnected(client, -1));
    this.server = createServer(this.aedes.handle);
    await listenOrExplain(this.server, this.options.port, this.options.host, 'BOARDFLEET_MQTT_PORT', 'MQTT');
    const address = this.server.address();
    return typeof address === 'object' && address ? address.port : this.options.port;
  }

  private updateConnected(client: Client, delta: number) {
    if (!this.serverClients.has(client)) this.options.metrics.connectedDevices.inc(delta);
  }

  /** Aedes keeps connected clients by id; its type declarations do not list the map. */
  private clientsById(): Record<string, Client | undefined> {
    return (this.aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
  }

  /** Drops a device's connection now (revocation); it cannot come back because its secret is gone. */
  disconnect(deviceId: string): void {
    const client = this.clientsById()[deviceId];
    client?.close();
  }

  /**
   * First step of a graceful stop: devices are disconnected (their last-wills do not matter, the
   * server marks everyone offline on start), then messages already acknowledged to them get a
   * moment to reach the server's own session before it closes.
   */
  async disconnectDevices(): Promise<void> {
    this.server.close();
    for (const client of Object.values(this.clientsById())) {
      if (client && !this.serverClients.has(client)) client.close();
    }
    await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_GRACE_MS));
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    if (this.server.listening) await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
