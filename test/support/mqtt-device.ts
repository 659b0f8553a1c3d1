import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** A raw MQTT.js client standing in for a device at the wire level (no agent logic). */
export async function connectDevice(url: string, options: IClientOptions): Promise<MqttClient> {
  return mqtt.connectAsync(url, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    ...options,
  });
}

/** Resolves with the connection error (CONNACK refusal) or null if the broker accepted. */
export async function connectionRefusal(url: string, options: IClientOptions): Promise<string | null> {
  try {
    const client = await connectDevice(url, options);
    await client.endAsync();
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

/** Collects every message a client receives, for asserting that nothing arrived. */
export function recordMessages(client: MqttClient): Array<{ topic: string; payload: string }> {
  const received: Array<{ topic: string; payload: string }> = [];
  client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  return received;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
