import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type SecureContextOptions,
  type Server as TlsServer,
} from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { MAX_PAYLOAD_BYTES, TOPIC_ROOT } from '../../protocol/topics.ts';
import { listenOrExplain } from '../common/listen.ts';
import { type BrokerLimits, DEFAULT_BROKER_LIMITS } from '../config/config.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { DeviceBroker, ServerSessionEndpoint } from './device-broker.ts';
import type { DeviceAuthenticator } from './device-authenticator.ts';
import { checkDeviceCertificate } from './device-certificate-check.ts';
import { PacketSizeGuard } from './packet-size-guard.ts';
import { PublishGate } from './publish-gate.ts';
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
const NOT_AUTHORIZED = 5;
/** The error Aedes raises when a connection sends no CONNECT within `connectTimeout`. */
const CONNECT_TIMEOUT_MESSAGE = 'connect did not arrive in time';

/** The part of Aedes' session store a deleted device's session is removed from. */
interface SessionStore {
  cleanSubscriptions(client: { id: string }): Promise<void>;
  delWill(client: { id: string }): Promise<unknown>;
  createRetainedStream(pattern: string): AsyncIterable<unknown>;
  storeRetained(packet: object): Promise<void>;
}

function authError(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * Aedes inside the server process, with device authentication and per-device topic ACLs. It checks
 * device secrets against the database, so registering or changing one needs nothing of it.
 */
export class EmbeddedBroker implements DeviceBroker {
  private aedes!: Aedes;
  private port: number | null = null;
  private tlsPort: number | null = null;
  private server!: Server;
  private tlsServer: TlsServer | null = null;
  /**
   * Authenticated server connections (their topics are not device topics). Kept by connection, not
   * by client id: a reconnect takes over the id, and closing the old connection must not make the
   * new one a stranger.
   */
  private readonly serverClients = new WeakSet<Client>();
  /** Connected server sessions: device messages published while there is none reach nobody. */
  private serverSessions = 0;
  private gate!: PublishGate;

  constructor(
    private readonly options: {
      host: string;
      port: number;
      /** MQTT over TLS beside plain MQTT; the certificate may be renewed while the broker runs. */
      tls?: {
        host: string;
        port: number;
        certificates: {
          /** The fleet CA, which issues device certificates. */
          caPem: string;
          secureContext(): SecureContextOptions;
          onRenewed(listener: (context: SecureContextOptions) => void): void;
        };
        /**
         * Devices must present a certificate of the fleet CA naming them, besides their secret, and
         * may connect over TLS only (plain MQTT is left to the server's own session).
         */
        requireDeviceCertificates: boolean;
      };
      serverSecret: string;
      authenticator: DeviceAuthenticator;
      /** Default: the documented defaults of the BOARDFLEET_MQTT_* variables. */
      limits?: BrokerLimits;
      metrics: ServerMetrics;
      logger: Logger;
    },
  ) {}

  private get limits(): BrokerLimits {
    return this.options.limits ?? DEFAULT_BROKER_LIMITS;
  }

  async start(): Promise<number> {
    const { authenticator, metrics, logger } = this.options;
    const limits = this.limits;
    const refuse = (kind: string, message: string, fields: object) => {
      metrics.refusedClients.inc({ kind });
      logger.warn(fields, message);
    };
    this.aedes = await Aedes.createBroker({
      connectTimeout: limits.connectTimeoutMs,
      // Unbounded routing, bounded by the gate below instead: Aedes' own queue (concurrency 100)
      // grew without limit behind a slow server session and, once that session dropped, drained
      // its unmatched messages by synchronous recursion until the stack overflowed (issue 13).
      concurrency: 0,
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
        if (this.options.tls?.requireDeviceCertificates) {
          const certificate = checkDeviceCertificate(client.conn, client.id);
          if (!certificate.accepted) {
            metrics.deviceAuthRefused.inc({ reason: 'bad-certificate' });
            refuse('connect', `device certificate refused: ${certificate.problem}`, { deviceId: client.id });
            done(authError(NOT_AUTHORIZED, certificate.problem), false);
            return;
          }
          logger.debug(
            { deviceId: client.id, serialNumber: certificate.serialNumber },
            'device certificate accepted',
          );
        }
        // With a certificate too: a key copied off a device is worthless without its secret.
        authenticator.authenticate(client.id, secret, remoteAddressOf(client)).then(
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
        if (this.serverClients.has(client)) {
          const allowed = mayServerUse(packet.topic);
          if (!allowed) refuse('publish', 'publish refused', { clientId: client.id, topic: packet.topic });
          return done(allowed ? null : new Error('not authorised'));
        }
        if (!mayDevicePublish(client.id, packet.topic)) {
          refuse('publish', 'publish refused', { clientId: client.id, topic: packet.topic });
          return done(new Error('not authorised'));
        }
        if (this.serverSessions === 0) metrics.mqttShed.inc({ reason: 'no-server-session' });
        this.gate.admit(() => done(null));
      },
      authorizeForward: (client, packet) => {
        // The gate holds device publishes at the limit; what still comes (wills, a burst already
        // read) is dropped past twice the limit rather than queued for the server session.
        if (this.serverClients.has(client) && this.backlog() >= 2 * limits.maxPendingMessages) {
          metrics.mqttShed.inc({ reason: 'backlog' });
          return null;
        }
        return packet;
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
    this.gate = new PublishGate(limits.maxPendingMessages, () => this.backlog(), {
      closed: () => {
        metrics.mqttBackpressure.inc();
        logger.warn(
          { maxPendingMessages: limits.maxPendingMessages },
          'broker backlog full: device sockets paused until it halves',
        );
      },
      held: (count) => metrics.mqttHeldPublishes.set(count),
    });
    this.aedes.on('client', (client) => this.updateConnected(client, +1));
    this.aedes.on('clientDisconnect', (client) => this.updateConnected(client, -1));
    this.aedes.on('connectionError', (client, error) => {
      if (error.message === CONNECT_TIMEOUT_MESSAGE) {
        refuse('connect-timeout', 'no CONNECT in time: connection closed', {
          remoteAddress: remoteAddressOf(client),
        });
      }
    });
    this.server = this.limitConnections(createServer((socket) => this.accept(socket)));
    const { tls } = this.options;
    try {
      await listenOrExplain(
        this.server,
        this.options.port,
        this.options.host,
        'BOARDFLEET_MQTT_PORT',
        'MQTT',
      );
      if (tls) {
        // Client certificates are asked for but not enforced in the handshake: authenticate()
        // refuses with a CONNACK, which an agent can act on (it fetches a new certificate over
        // HTTPS), and logs why, where a failed handshake would tell neither side anything.
        const deviceCa = tls.requireDeviceCertificates ? { ca: tls.certificates.caPem } : {};
        // 'secureConnection': the guard and Aedes read decrypted bytes, after the handshake.
        const tlsServer = createTlsServer(
          {
            ...tls.certificates.secureContext(),
            ...deviceCa,
            requestCert: tls.requireDeviceCertificates,
            rejectUnauthorized: false,
            handshakeTimeout: limits.connectTimeoutMs,
          },
          (socket) => this.accept(socket),
        );
        tls.certificates.onRenewed((context) => tlsServer.setSecureContext({ ...context, ...deviceCa }));
        tlsServer.on('tlsClientError', (error, socket) =>
          logger.debug({ err: error, remoteAddress: socket.remoteAddress }, 'TLS handshake failed'),
        );
        this.tlsServer = this.limitConnections(tlsServer);
        await listenOrExplain(tlsServer, tls.port, tls.host, 'BOARDFLEET_MQTTS_PORT', 'MQTT over TLS');
        this.tlsPort = portOf(tlsServer, tls.port);
      }
    } catch (error) {
      if (this.server.listening) this.server.close();
      // Aedes' heartbeat and will timers would keep a process that cannot serve alive.
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      throw error;
    }
    this.port = portOf(this.server, this.options.port);
    return this.port;
  }

  /** Node closes connections beyond the cap before they are handed to Aedes, and tells with 'drop'. */
  private limitConnections<T extends Server>(server: T): T {
    const { metrics, logger } = this.options;
    const { maxConnections } = this.limits;
    server.maxConnections = maxConnections;
    server.on('drop', (peer) => {
      metrics.refusedClients.inc({ kind: 'connection-limit' });
      logger.warn(
        { remoteAddress: peer?.remoteAddress, maxConnections },
        'MQTT connection limit reached: connection closed',
      );
    });
    return server;
  }

  serverSession(): ServerSessionEndpoint {
    return {
      url: `mqtt://127.0.0.1:${this.devicePort()}`,
      username: SERVER_MQTT_USERNAME,
      password: this.options.serverSecret,
      sharedGroup: null,
    };
  }

  deviceTlsPort(): number | null {
    return this.tlsPort;
  }

  devicePort(): number {
    if (this.port === null) throw new Error('the embedded broker is not started');
    return this.port;
  }

  async registerDevice(): Promise<void> {}

  /** Every device the database knows is known here: nothing to register. */
  async ensureDevice(): Promise<boolean> {
    return false;
  }

  async changeDeviceSecret(): Promise<void> {}

  async revokeDevice(deviceId: string): Promise<void> {
    this.disconnect(deviceId);
  }

  /**
   * Hands a socket to Aedes, watching the packet sizes it announces. The watch sees each chunk as
   * Aedes reads it (read() emits 'data' while Aedes drives the stream with 'readable'), so a
   * packet announced over the limit closes the connection before its body is buffered.
   */
  private accept(socket: Socket): void {
    const { metrics, logger } = this.options;
    const limits = this.limits;
    this.aedes.handle(socket);
    const guard = new PacketSizeGuard(limits.maxPacketBytes);
    socket.on('data', (chunk: Buffer) => {
      const announced = guard.feed(chunk);
      if (announced === null || socket.destroyed) return;
      metrics.invalidPayloads.inc({ channel: 'any', reason: 'oversized' });
      metrics.refusedClients.inc({ kind: 'packet-size' });
      logger.warn(
        { remoteAddress: socket.remoteAddress, announcedBytes: announced, maxBytes: limits.maxPacketBytes },
        'MQTT packet over the size limit: connection closed',
      );
      socket.destroy();
    });
  }

  private updateConnected(client: Client, delta: number) {
    if (this.serverClients.has(client)) this.serverSessions += delta;
    else this.options.metrics.connectedDevices.inc(delta);
  }

  /**
   * Messages routed but not yet taken by their subscribers' sockets (Aedes' router counts a
   * message until every subscriber's socket has accepted it under its high-water mark).
   */
  private backlog(): number {
    return (this.aedes as unknown as { mq: { current: number } }).mq.current;
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
   * Ends everything the broker keeps for a deleted device: its connection, its persistent session
   * (it connects with clean: false, so its subscriptions would keep collecting messages) and its
   * will, and the retained messages on its topics (presence, inventory, desired state).
   */
  async forgetDevice(deviceId: string): Promise<void> {
    const client = this.clientsById()[deviceId];
    if (client) await new Promise<void>((resolve) => client.close(() => resolve()));
    // Aedes 1.x drives its persistence with promises; its type declarations still list callbacks.
    const persistence = (this.aedes as unknown as { persistence: SessionStore }).persistence;
    await persistence.cleanSubscriptions({ id: deviceId });
    await persistence.delWill({ id: deviceId });
    const topics: string[] = [];
    for await (const packet of persistence.createRetainedStream(`${TOPIC_ROOT}/${deviceId}/#`))
      topics.push((packet as { topic: string }).topic);
    // An empty retained payload deletes the retained message (MQTT 3.1.1, 3.3.1.3).
    for (const topic of topics)
      await persistence.storeRetained({
        cmd: 'publish',
        topic,
        payload: Buffer.alloc(0),
        qos: 0,
        retain: true,
      });
  }

  /**
   * First step of a graceful stop: devices are disconnected (their last-wills do not matter, the
   * server marks everyone offline on start), then messages already acknowledged to them get a
   * moment to reach the server's own session before it closes.
   */
  async disconnectDevices(): Promise<void> {
    this.server.close();
    this.tlsServer?.close();
    for (const client of Object.values(this.clientsById())) {
      if (client && !this.serverClients.has(client)) client.close();
    }
    await new Promise((resolve) => setTimeout(resolve, IN_FLIGHT_GRACE_MS));
  }

  async stop(): Promise<void> {
    this.gate.open();
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    for (const server of [this.server, this.tlsServer]) {
      if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
}

function portOf(server: Server, configured: number): number {
  const address = server.address();
  return typeof address === 'object' && address ? address.port : configured;
}

/** Aedes types a connection as any duplex stream; ours are TCP sockets. */
function remoteAddressOf(client: Client): string {
  return (client.conn as Partial<Socket>).remoteAddress ?? 'unknown';
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
