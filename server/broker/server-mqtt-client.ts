import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { encodePayload } from '../../protocol/codec.ts';
import type { ChannelPayload } from '../../protocol/schemas.ts';
import {
  allDevicesTopic,
  DEVICE_TO_SERVER_CHANNELS,
  deviceTopic,
  type ServerToDeviceChannel,
} from '../../protocol/topics.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import { SERVER_MQTT_USERNAME } from './embedded-broker.ts';

/** The server's own MQTT session: the same code path whether the broker is embedded or external. */
export class ServerMqttClient {
  private client: MqttClient | null = null;

  constructor(
    private readonly options: {
      url: string;
      secret: string;
      metrics: ServerMetrics;
      logger: Logger;
      onDeviceMessage: (topic: string, payload: Buffer) => void;
    },
  ) {}

  async start(): Promise<void> {
    const client = await mqtt.connectAsync(this.options.url, {
      protocolVersion: 4,
      clientId: `${SERVER_MQTT_USERNAME}-${process.pid}-${Date.now().toString(36)}`,
      username: SERVER_MQTT_USERNAME,
      password: this.options.secret,
      clean: true,
      reconnectPeriod: 1_000,
    });
    client.on('message', (topic, payload) => this.options.onDeviceMessage(topic, payload));
    client.on('error', (error) => this.options.logger.error({ err: error }, 'server MQTT client error'));
    const granted = await client.subscribeAsync(
      DEVICE_TO_SERVER_CHANNELS.map((channel) => allDevicesTopic(channel)),
      { qos: 1 },
    );
    const refused = granted.filter((grant) => grant.qos === 128);
    if (refused.length > 0) {
      throw new Error(
        `broker refused the server's subscriptions: ${refused.map((grant) => grant.topic).join(', ')}`,
      );
    }
    this.client = client;
  }

  async publishToDevice<C extends ServerToDeviceChannel>(
    deviceId: string,
    channel: C,
    payload: ChannelPayload[C],
    options: { retain: boolean },
  ): Promise<void> {
    if (!this.client) throw new Error('server MQTT client is not connected');
    await this.client.publishAsync(deviceTopic(deviceId, channel), encodePayload(channel, payload), {
      qos: 1,
      retain: options.retain,
    });
    this.options.metrics.messagesSent.inc({ channel });
  }

  async stop(): Promise<void> {
    await this.client?.endAsync();
    this.client = null;
  }
}
