import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Inventory } from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';

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

/**
 * What an agent says first, done by hand: retained presence online, then its retained inventory
 * (a Raspberry Pi 4 on Debian with no slots unless `inventory` says otherwise), which it returns.
 */
export async function announceDevice(
  client: MqttClient,
  deviceId: string,
  inventory: Partial<Inventory> = {},
): Promise<Inventory> {
  await client.publishAsync(
    deviceTopic(deviceId, 'presence'),
    JSON.stringify({ state: 'online', reason: 'started', at: Date.now() }),
    { qos: 1, retain: true },
  );
  const full: Inventory = {
    board: 'rpi-4b',
    os: 'Debian GNU/Linux 12 (bookworm)',
    kernel: '6.1.0',
    architecture: 'arm64',
    agentVersion: '0.1.0',
    hostname: deviceId,
    slots: [],
    attachedBoards: [],
    at: Date.now(),
    ...inventory,
  };
  await client.publishAsync(deviceTopic(deviceId, 'inventory'), JSON.stringify(full), {
    qos: 1,
    retain: true,
  });
  return full;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
