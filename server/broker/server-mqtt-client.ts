import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { MqttSessionHealth } from '../../protocol/api/fleet.ts';
import { encodePayload } from '../../protocol/codec.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ChannelPayload } from '../../protocol/schemas.ts';
import {
  allDevicesTopic,
  DEVICE_TO_SERVER_CHANNELS,
  type DeviceToServerChannel,
  deviceTopic,
  MAX_PAYLOAD_BYTES,
  PROTOCOL_VERSION,
  SERVER_HELLO_TOPIC,
  type ServerToDeviceChannel,
  TO_EVERY_REPLICA,
} from '../../protocol/topics.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { ServerSessionEndpoint } from './device-broker.ts';
import { SERVER_MQTT_USERNAME } from './embedded-broker.ts';

/**
 * Refuses a message the broker would refuse. The broker answers an oversized publish by dropping
 * the connection, and MQTT.js resends unacknowledged QoS 1 messages on reconnect, so sending it
 * would stall the session in a loop (no telemetry until restart): it must never reach the client.
 */
function assertDeliverable(deviceId: string, channel: ServerToDeviceChannel, encoded: string): void {
  const bytes = Buffer.byteLength(encoded);
  if (bytes > MAX_PAYLOAD_BYTES) {
    throw new BoardfleetError(
      'message-too-large',
      `the ${channel} message for device ${deviceId} is ${bytes} bytes; MQTT messages may carry at most ` +
        `${MAX_PAYLOAD_BYTES} bytes (64 KiB) — send less`,
    );
  }
}

/**
 * Channels devices publish retained. A shared subscription gets no retained messages (MQTT 5,
 * 4.8.2), and the server learns who is online after its own restart from them, so these stay
 * ordinary subscriptions; their writes are idempotent.
 */
const RETAINED_BY_DEVICES: ReadonlySet<DeviceToServerChannel> = new Set(['presence', 'inventory']);

/** The server's own MQTT session: the same code path whether the broker is embedded or external. */
export class ServerMqttClient {
  private readonly reconnectListeners: Array<() => void> = [];
  private readonly disconnectListeners: Array<() => void> = [];
  /** Kept across reconnects: the broker hands a returning client id the session it had. */
  readonly clientId = `${SERVER_MQTT_USERNAME}-${process.pid}-${Date.now().toString(36)}`;
  private client: MqttClient | null = null;
  private session: MqttSessionHealth = { state: 'connecting', since: Date.now() };

  constructor(
    private readonly options: {
      url: string;
      secret: string;
      /** Default: the embedded broker's name for the server. */
      username?: string;
      /** Default: none (an ordinary subscription). */
      sharedGroup?: ServerSessionEndpoint['sharedGroup'];
      metrics: ServerMetrics;
      logger: Logger;
      onDeviceMessage: (topic: string, payload: Buffer) => void;
    },
  ) {}

  async start(): Promise<void> {
    const client = await mqtt.connectAsync(this.options.url, {
      protocolVersion: 4,
      clientId: this.clientId,
      username: this.options.username ?? SERVER_MQTT_USERNAME,
      password: this.options.secret,
      clean: true,
      reconnectPeriod: 1_000,
    });
    client.on('message', (topic, payload) => this.options.onDeviceMessage(topic, payload));
    client.on('error', (error) => this.options.logger.error({ err: error }, 'server MQTT client error'));
    client.on('close', () => {
      if (this.session.state === 'connected') for (const listener of this.disconnectListeners) listener();
      this.enter('reconnecting');
    });
    client.on('connect', () => {
      this.enter('connected');
      for (const listener of this.reconnectListeners) listener();
    });
    const group = this.options.sharedGroup ?? null;
    const granted = await client.subscribeAsync(
      DEVICE_TO_SERVER_CHANNELS.map((channel) =>
        group === null || RETAINED_BY_DEVICES.has(channel) || TO_EVERY_REPLICA.has(channel)
          ? allDevicesTopic(channel)
          : `$share/${group}/${allDevicesTopic(channel)}`,
      ),
      { qos: 1 },
    );
    const refused = granted.filter((grant) => grant.qos === 128);
    if (refused.length > 0) {
      await client.endAsync(true);
      throw new Error(
        `broker refused the server's subscriptions: ${refused.map((grant) => grant.topic).join(', ')}`,
      );
    }
    // Retained: every agent that subscribes gets it, and knows it reached Boardfleet's broker.
    await client.publishAsync(
      SERVER_HELLO_TOPIC,
      encodePayload('hello', { protocolVersion: PROTOCOL_VERSION, at: Date.now() }),
      { qos: 1, retain: true },
    );
    this.client = client;
    this.enter('connected');
  }

  /**
   * Called each time the session is back after losing the broker (a broker restart, a network
   * cut): until devices reconnect too, the presence the broker reports says little.
   */
  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /** Called each time the connected session loses the broker: presence is unknown until it is back. */
  onDisconnect(listener: () => void): void {
    this.disconnectListeners.push(listener);
  }

  /** Whether the session is connected, or since when it has been trying to get back. */
  health(): MqttSessionHealth {
    return { ...this.session };
  }

  /**
   * Publishes with QoS 1. Fails with `message-too-large` (nothing sent, nothing queued) when the
   * encoded message is over the broker's limit.
   */
  async publishToDevice<C extends ServerToDeviceChannel>(
    deviceId: string,
    channel: C,
    payload: ChannelPayload[C],
    options: { retain: boolean },
  ): Promise<void> {
    if (!this.client) throw new Error('server MQTT client is not connected');
    const encoded = encodePayload(channel, payload);
    assertDeliverable(deviceId, channel, encoded);
    await this.client.publishAsync(deviceTopic(deviceId, channel), encoded, {
      qos: 1,
      retain: options.retain,
    });
    this.options.metrics.messagesSent.inc({ channel });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
    this.client = null;
    this.enter('stopped');
  }

  /** Records a change of state; repeated events (a close per failed reconnect) keep the first time. */
  private enter(state: MqttSessionHealth['state']): void {
    if (this.session.state !== state) this.session = { state, since: Date.now() };
  }
}
