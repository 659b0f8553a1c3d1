import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { decodePayload, encodePayload } from '../../protocol/codec.ts';
import {
  type ChannelPayload,
  type Command,
  DEPLOYMENT_EVENT_TYPE,
  type DesiredState,
  type DeviceEvent,
  type Inventory,
} from '../../protocol/schemas.ts';
import {
  type DeviceToServerChannel,
  deviceTopic,
  OPTIONAL_SERVER_TO_DEVICE_CHANNELS,
  SERVER_HELLO_TOPIC,
  SERVER_TO_DEVICE_CHANNELS,
  type ServerToDeviceChannel,
} from '../../protocol/topics.ts';
import type { RunningVersion } from '../update/update-state-machine.ts';
import {
  BrokerIdentityError,
  explainConnectError,
  noServerHello,
  refusedSubscriptions,
  refusesCredentials,
} from './broker-identity.ts';
import type { ClientCertificate } from './certificate-renewal.ts';
import type { Collectors } from './collectors.ts';
import { HandledMessages } from './handled-messages.ts';
import { Outbox } from './outbox.ts';

export interface DeviceAgentOptions {
  deviceId: string;
  secret: string;
  /** One or more brokers; the next is tried when one cannot be reached. */
  mqttUrls: string[];
  dataDir: string;
  heartbeatSeconds: number;
  keepaliveSeconds: number;
  /** How long after connecting the server's hello may take before the broker is called foreign; default 10. */
  helloTimeoutSeconds?: number;
  collectors: Collectors;
  logger: Logger;
  /** Applies deployments from the desired state; null for an agent that only reports. */
  updates: DeploymentApplier | null;
  /** Arduino-class boards on the device's serial ports, as the inventory reports them. */
  attachedBoards?: () => Inventory['attachedBoards'];
  /**
   * Asks the server, with the device's credentials, where its broker is: called before the next
   * attempt when the broker refused the credentials, since the server then registers the device
   * with its broker (a fleet moved to Mosquitto) and the broker may have moved. The answer
   * replaces the URL when `mqttUrls` holds one.
   */
  locateBroker?: () => Promise<string>;
  /** The pinned fleet CA an mqtts:// broker's certificate must chain to; absent: the system's CAs. */
  ca?: string | null;
  /** The device's own certificate (mTLS), for fleets that require one. */
  certificate?: ClientCertificate;
  /** The hash of the configuration variables applied, reported in the inventory. */
  appliedConfigHash?: () => string;
  /** Handlers of the operator conversations (log watches, shell sessions), outside the agent's core. */
  conversations?: ConversationHandlers;
}

/** What the agent hands on of the channels an operator's request opens (see `TO_EVERY_REPLICA`). */
export type ConversationHandlers = {
  [C in 'log-watch' | 'shell-input']?: (message: ChannelPayload[C]) => void;
};

/** What the agent needs of an update manager (the real one, or a simulated device's). */
export interface DeploymentApplier {
  readonly current: { readonly running: RunningVersion | null };
  apply(deployment: DesiredState['deployment']): Promise<void>;
  stop(): Promise<void>;
}

const MAX_BACKOFF_MS = 60_000;

/** A broker's URL as MQTT.js takes it in `servers`. */
function brokerAddress(url: URL): { host: string; port: number; protocol: 'mqtt' | 'mqtts' } {
  return {
    host: url.hostname,
    port: Number(url.port || 1883),
    protocol: url.protocol.replace(':', '') as 'mqtt' | 'mqtts',
  };
}

/**
 * The agent's MQTT side: presence with a last-will, inventory when it changes, heartbeats,
 * events through an on-disk outbox, idempotent commands, and the desired state handed to the
 * update manager. Emits 'online' and 'offline'. A session counts (and the device announces
 * itself) only once the server's hello has arrived: until then the broker may be anybody's.
 */
export class DeviceAgent extends EventEmitter<{ online: []; offline: []; desired: [DesiredState] }> {
  private client: MqttClient | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private helloTimer: NodeJS.Timeout | null = null;
  private backoffMs = 1_000;
  /** Connection attempts that failed since the last success, and why the last one did. */
  private failedAttempts = 0;
  private lastError: Error | null = null;
  /** The last attempt's CONNACK refused the device's credentials. */
  private credentialsRefused = false;
  /** Where the client connects; replaced in place when the server names another broker. */
  private servers: { host: string; port: number; protocol: 'mqtt' | 'mqtts' }[] = [];
  /** The server's hello arrived on this connection: the broker is Boardfleet's. */
  private sessionUp = false;
  private stopping = false;
  private flushing: Promise<void> = Promise.resolve();
  private lastInventory = '';
  /** The last deployment report recorded, sent again when the server asks (`report`). */
  private lastDeploymentReport: DeviceEvent | null = null;
  private readonly handled: HandledMessages;
  readonly outbox: Outbox;

  constructor(private readonly options: DeviceAgentOptions) {
    super();
    this.handled = new HandledMessages(options.dataDir);
    this.outbox = new Outbox(options.dataDir);
  }

  /** Connected to Boardfleet's broker (its hello seen), not merely to a broker. */
  get connected(): boolean {
    return this.sessionUp && (this.client?.connected ?? false);
  }

  start(): void {
    const { deviceId, secret, keepaliveSeconds, mqttUrls } = this.options;
    const [first, ...rest] = mqttUrls.map((url) => new URL(url));
    if (!first) throw new Error('no MQTT URL');
    this.servers = [first, ...rest].map(brokerAddress);
    const certificate = this.options.certificate?.current();
    this.client = mqtt.connect({
      servers: this.servers,
      protocolVersion: 4,
      ...(this.options.ca ? { ca: this.options.ca } : {}),
      // MQTT.js wants a protocol beside a client certificate, though each server names its own.
      ...(certificate && { ...certificate, protocol: this.servers[0]?.protocol }),
      rejectUnauthorized: true,
      clientId: deviceId,
      username: deviceId,
      password: secret,
      clean: false,
      keepalive: keepaliveSeconds,
      // Reconnects are ours: exponential backoff with jitter, so a fleet does not return in lockstep.
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      will: {
        topic: deviceTopic(deviceId, 'presence'),
        payload: Buffer.from(
          encodePayload('presence', { state: 'offline', reason: 'connection-lost', at: Date.now() }),
        ),
        qos: 1,
        retain: true,
      },
    });
    this.client.on('connect', () => void this.onConnect());
    this.client.on('close', () => this.onClose());
    // Logged once per attempt when the connection closes, with the retry delay: a wrong secret
    // gives one line a person can act on per attempt, not a stack trace each time.
    this.client.on('error', (error) => {
      this.credentialsRefused ||= refusesCredentials(error);
      this.lastError = explainConnectError(this.brokerUrl(), error);
    });
    this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  /** The broker of the current attempt, as a URL (the client cycles through `mqttUrls`). */
  private brokerUrl(): string {
    const { protocol, host, port } = this.client?.options ?? {};
    return `${protocol ?? 'mqtt'}://${host?.includes(':') ? `[${host}]` : host}:${port}`;
  }

  /** Subscribes, and gives the server's hello its time: announcing waits for it (`onServerHello`). */
  private async onConnect(): Promise<void> {
    const client = this.client as MqttClient;
    const { deviceId } = this.options;
    this.options.logger.debug({ mqttUrl: this.brokerUrl() }, 'waiting for the server hello');
    const seconds = this.options.helloTimeoutSeconds ?? 10;
    this.helloTimer = setTimeout(
      () => this.refuseBroker(noServerHello(this.brokerUrl(), seconds)),
      seconds * 1000,
    );
    const topics = [SERVER_HELLO_TOPIC, deviceTopic(deviceId, 'desired'), deviceTopic(deviceId, 'commands')];
    const refused = await this.subscribe(client, topics);
    if (refused.length > 0) return this.refuseBroker(refusedSubscriptions(this.brokerUrl(), refused));
    const optional = [...OPTIONAL_SERVER_TO_DEVICE_CHANNELS].filter(
      // Only with a certificate: a broker set up before certificates existed refuses the topic.
      (channel) => channel !== 'certificate' || this.options.certificate?.current(),
    );
    const refusedOptional = await this.subscribe(
      client,
      optional.map((channel) => deviceTopic(deviceId, channel)),
    );
    // A broker role written by an older server: the rest works, these wait for the server to update it.
    if (refusedOptional.length > 0)
      this.options.logger.warn(
        { refused: refusedOptional },
        `the broker refuses ${refusedOptional.join(', ')}: live logs, the shell or certificate renewal wait until the server updates this device's access`,
      );
  }

  /** Subscribes; returns the topics the broker refused (none when the connection closed meanwhile). */
  private async subscribe(client: MqttClient, topics: string[]): Promise<string[]> {
    if (topics.length === 0) return [];
    try {
      await client.subscribeAsync(topics, { qos: 1 });
      return [];
    } catch (error) {
      // MQTT.js rejects a SUBACK with a failure code (0x80) and keeps the packet; any other
      // error means the connection closed meanwhile, and its close handler retries.
      const granted = (error as { packet?: { granted?: unknown[] } }).packet?.granted ?? [];
      if (granted.length === 0) this.options.logger.debug({ err: error }, 'subscribing failed');
      return topics.filter((_topic, index) => granted[index] === 128);
    }
  }

  /** Ends a connection to a broker that is not Boardfleet's; the close handler logs why and retries. */
  private refuseBroker(error: BrokerIdentityError): void {
    this.clearHelloTimer();
    if (this.sessionUp) return;
    this.lastError = error;
    this.client?.end(true);
  }

  private clearHelloTimer(): void {
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.helloTimer = null;
  }

  private onServerHello(payload: Buffer): void {
    if (this.sessionUp) return;
    const decoded = decodePayload('hello', payload);
    if (!decoded.ok)
      return void this.options.logger.warn(
        { reason: decoded.reason, detail: decoded.detail },
        'invalid server hello dropped',
      );
    this.clearHelloTimer();
    void this.announce();
  }

  /** The broker is Boardfleet's: presence, inventory, health, heartbeats, and the outbox. */
  private async announce(): Promise<void> {
    const client = this.client as MqttClient;
    this.backoffMs = 1_000;
    this.failedAttempts = 0;
    this.lastError = null;
    this.sessionUp = true;
    this.options.logger.info({ deviceId: this.options.deviceId, mqttUrl: this.brokerUrl() }, 'connected');
    const { deviceId } = this.options;
    try {
      await client.publishAsync(
        deviceTopic(deviceId, 'presence'),
        encodePayload('presence', {
          state: 'online',
          reason: 'started',
          at: Date.now(),
          agentVersion: this.options.collectors.inventory().agentVersion,
        }),
        { qos: 1, retain: true },
      );
      this.lastInventory = '';
      await this.publishInventory();
      this.publishHealth();
    } catch (error) {
      this.options.logger.warn({ err: error }, 'announcing the device failed');
    }
    this.heartbeat ??= setInterval(() => {
      this.publishHealth();
      void this.publishInventory();
    }, this.options.heartbeatSeconds * 1000);
    this.emit('online');
    this.options.certificate?.online(async (request) => {
      await client.publishAsync(
        deviceTopic(deviceId, 'certificate-request'),
        encodePayload('certificate-request', request),
        { qos: 1 },
      );
    });
    this.flush();
  }

  private onClose(): void {
    this.clearHelloTimer();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    // A publish in flight when the connection dropped may never settle, and would hold every later
    // flush back for good; its event stays in the outbox (removed only when acknowledged) and is sent again.
    this.flushing = Promise.resolve();
    this.options.certificate?.offline();
    this.emit('offline');
    if (this.stopping || this.reconnectTimer) return;
    const delay = this.backoffMs * (0.5 + Math.random());
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.logConnectionFailure(delay);
    // Once per refused attempt, so at most once per backoff step; the attempt waits for the answers.
    const located = this.credentialsRefused
      ? Promise.all([this.locateBroker(), this.options.certificate?.refused()])
      : Promise.resolve();
    this.credentialsRefused = false;
    this.reconnectTimer = setTimeout(() => {
      void located.then(() => {
        this.reconnectTimer = null;
        // MQTT.js builds each connection from these options: a renewed certificate goes in here.
        if (this.client) Object.assign(this.client.options, this.options.certificate?.current());
        if (!this.stopping) this.client?.reconnect();
      });
    }, delay);
  }

  /** Asks the server where the broker is (see `locateBroker`); a server that cannot be asked changes nothing. */
  private async locateBroker(): Promise<void> {
    const { locateBroker, logger } = this.options;
    if (!locateBroker) return;
    let located: URL;
    try {
      located = new URL(await locateBroker());
    } catch (error) {
      return void logger.debug({ err: error }, 'cannot ask the server where its broker is');
    }
    const address = brokerAddress(located);
    const [current] = this.servers;
    if (this.servers.length !== 1 || !current) return;
    if (
      current.host === address.host &&
      current.port === address.port &&
      current.protocol === address.protocol
    )
      return;
    logger.info(
      { mqttUrl: located.toString(), was: this.brokerUrl() },
      `the server's broker is at ${located}`,
    );
    this.servers[0] = address;
  }

  private logConnectionFailure(delayMs: number): void {
    const lost = this.sessionUp;
    this.sessionUp = false;
    this.failedAttempts = lost ? 0 : this.failedAttempts + 1;
    const reason = this.lastError?.message ?? 'the connection closed';
    const level = this.lastError instanceof BrokerIdentityError ? 'error' : 'warn';
    this.lastError = null;
    this.options.logger[level](
      { failedAttempts: this.failedAttempts, reason, retryInMs: Math.round(delayMs) },
      `MQTT ${lost ? 'connection lost' : `connection attempt ${this.failedAttempts} failed`}: ${reason}; retrying in ${(delayMs / 1000).toFixed(1)} s`,
    );
  }

  /** What the agent does with each message from the server, once decoded. */
  private readonly handlers: { [C in ServerToDeviceChannel]: (message: ChannelPayload[C]) => void } = {
    commands: (command) => this.onCommand(command),
    desired: (desired) => this.onDesired(desired),
    certificate: (message) => this.options.certificate?.received(message),
    'log-watch': (message) => this.options.conversations?.['log-watch']?.(message),
    'shell-input': (message) => this.options.conversations?.['shell-input']?.(message),
  };

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === SERVER_HELLO_TOPIC) return this.onServerHello(payload);
    const channel = SERVER_TO_DEVICE_CHANNELS.find(
      (known) => topic === deviceTopic(this.options.deviceId, known),
    );
    if (channel) this.handle(channel, payload);
  }

  private handle<C extends ServerToDeviceChannel>(channel: C, payload: Buffer): void {
    const decoded = decodePayload(channel, payload);
    if (!decoded.ok)
      return void this.options.logger.warn(
        { channel, reason: decoded.reason, detail: decoded.detail },
        `invalid ${channel} message dropped`,
      );
    this.handlers[channel](decoded.value);
  }

  private onCommand(command: Command): void {
    if (!this.handled.firstTime(command.id)) return;
    if (command.type === 'ping') this.recordEvent('command-result', { commandId: command.id, ok: true });
    if (command.type === 'report') {
      this.lastInventory = '';
      void this.publishInventory();
      this.publishHealth();
      // The server may have lost it with a replica that died before storing it. Sent again as
      // the same event (its id), which a server that did store it drops: no second report.
      const last = this.lastDeploymentReport;
      if (last && !this.outbox.pending().some((event) => event.id === last.id)) {
        this.outbox.add(last);
        this.flush();
      }
      this.recordEvent('command-result', { commandId: command.id, ok: true });
    }
  }

  private onDesired(desired: DesiredState): void {
    // Retained and redelivered on every reconnect: only a newer version is acted on.
    if (!this.handled.newer(desired.version)) return;
    this.emit('desired', desired);
    this.recordEvent('desired-state-received', { version: desired.version });
    void this.options.updates?.apply(desired.deployment).then(() => void this.publishInventory());
  }

  /**
   * Publishes on one of the device's channels now, with QoS 1 (not through the outbox: what an
   * operator watches live is worth nothing later). False when not connected or not acknowledged.
   */
  async publish<C extends DeviceToServerChannel>(channel: C, payload: ChannelPayload[C]): Promise<boolean> {
    const client = this.client;
    if (!client || !this.connected) return false;
    try {
      await client.publishAsync(
        deviceTopic(this.options.deviceId, channel),
        encodePayload(channel, payload),
        {
          qos: 1,
        },
      );
      return true;
    } catch (error) {
      this.options.logger.debug({ err: error, channel }, 'publish not acknowledged');
      return false;
    }
  }

  /** Sends the inventory again if it changed (a new configuration applied, a board attached). */
  refreshInventory(): void {
    void this.publishInventory().catch((error: unknown) =>
      this.options.logger.debug({ err: error }, 'inventory not sent'),
    );
  }

  /** Queues an event on disk and sends it when connected; removed only once the broker acknowledged it. */
  recordEvent(
    type: string,
    data?: Record<string, unknown>,
    extra: { message?: string; deploymentId?: string } = {},
  ): DeviceEvent {
    const event: DeviceEvent = {
      id: randomUUID(),
      at: Date.now(),
      type,
      ...extra,
      ...(data ? { data } : {}),
    };
    if (type === DEPLOYMENT_EVENT_TYPE) this.lastDeploymentReport = event;
    this.outbox.add(event);
    this.flush();
    return event;
  }

  private flush(): void {
    this.flushing = this.flushing.then(async () => {
      for (const event of [...this.outbox.pending()]) {
        const client = this.client;
        if (!client || !this.connected) return;
        try {
          await client.publishAsync(
            deviceTopic(this.options.deviceId, 'events'),
            encodePayload('events', event),
            { qos: 1 },
          );
          this.outbox.acknowledge(event.id);
        } catch (error) {
          this.options.logger.debug({ err: error }, 'event not acknowledged yet; kept in the outbox');
          return;
        }
      }
    });
  }

  private publishHealth(): void {
    if (!this.client || !this.connected) return;
    this.client.publish(
      deviceTopic(this.options.deviceId, 'health'),
      encodePayload('health', this.options.collectors.health()),
      { qos: 0 },
    );
  }

  /** Publishes the inventory when it differs from the last one sent (retained, so the server always has it). */
  private async publishInventory(): Promise<void> {
    if (!this.client || !this.connected) return;
    const running = this.options.updates?.current.running ?? null;
    const base = this.options.collectors.inventory();
    const inventory: Omit<Inventory, 'at'> = {
      ...base,
      slots: running
        ? [{ name: 'app', artifact: running.artifact, version: running.version, active: true }]
        : [],
      attachedBoards: this.options.attachedBoards?.() ?? [],
      ...(this.options.appliedConfigHash && { configHash: this.options.appliedConfigHash() }),
    };
    const text = JSON.stringify(inventory);
    if (text === this.lastInventory) return;
    this.lastInventory = text;
    await this.client.publishAsync(
      deviceTopic(this.options.deviceId, 'inventory'),
      encodePayload('inventory', { ...inventory, at: Date.now() }),
      {
        qos: 1,
        retain: true,
      },
    );
  }

  /** Says goodbye (retained offline, reason shutdown) and disconnects cleanly, so no last-will fires. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.clearHelloTimer();
    this.options.certificate?.offline();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    const client = this.client;
    if (!client) return this.outbox.close();
    if (this.connected) {
      await this.flushing;
      await client
        .publishAsync(
          deviceTopic(this.options.deviceId, 'presence'),
          encodePayload('presence', { state: 'offline', reason: 'shutdown', at: Date.now() }),
          {
            qos: 1,
            retain: true,
          },
        )
        .catch(() => undefined);
    }
    await client.endAsync();
    this.outbox.close();
    await this.options.updates?.stop();
  }
}
