// The rollout benchmark's baseline: a raw broker round-trip to the same N device clients, on the
// devices' real topics — the server's login publishes to each device's `desired`, each device
// answers on its `events`, and the server's login receives the answers.
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { allDevicesTopic, deviceTopic } from '../protocol/topics.ts';
import { percentile } from './stats.ts';

export interface RoundTrip {
  p50: number;
  p99: number;
  /** First publish → last reply received. */
  totalMs: number;
  /** Replies received of the devices' count: a broker that drops messages loses some. */
  replies: number;
}

/** Connections opened at once while the devices connect. */
const CONNECT_CONCURRENCY = 100;
/** With replies missing, the round trip ends once none has come for this long. */
const QUIET_MS = 10_000;

/** The round trip on a bare Aedes (no authentication, no server logic). */
export async function bareAedesRoundTrip(devices: Array<{ id: string; secret: string }>): Promise<RoundTrip> {
  const broker = await Aedes.createBroker();
  const tcp = createServer(broker.handle);
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  try {
    const url = `mqtt://127.0.0.1:${(tcp.address() as { port: number }).port}`;
    return await brokerRoundTrip(url, devices, {});
  } finally {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    tcp.close();
  }
}

/**
 * The round trip through the broker at `url`: each device logs in with its own credentials (its
 * Mosquitto client), the publisher with `serverLogin`. Messages the broker keeps retained on these
 * topics (a rollout's desired states) arrive on subscribing with the retain flag and are ignored.
 */
export async function brokerRoundTrip(
  url: string,
  devices: Array<{ id: string; secret: string }>,
  serverLogin: IClientOptions,
): Promise<RoundTrip> {
  const clients: MqttClient[] = [];
  const server = await mqtt.connectAsync(url, { ...serverLogin, protocolVersion: 4 });
  const rtts: number[] = [];
  let lastReplyAt = 0;
  let quiet: NodeJS.Timeout | undefined;
  let settle = () => undefined as void;
  const rearm = () => {
    clearTimeout(quiet);
    quiet = setTimeout(settle, QUIET_MS);
  };
  const done = new Promise<void>((resolve, reject) => {
    settle = resolve;
    server.on('error', reject);
    server.on('message', (_topic, payload) => {
      lastReplyAt = Date.now();
      rtts.push(lastReplyAt - Number(payload.toString()));
      if (rtts.length === devices.length) resolve();
      else rearm();
    });
  });
  // Awaited below; an error of the publisher's session before then must not go unhandled meanwhile.
  done.catch(() => undefined);
  try {
    for (let i = 0; i < devices.length; i += CONNECT_CONCURRENCY) {
      const batch = devices.slice(i, i + CONNECT_CONCURRENCY);
      clients.push(...(await Promise.all(batch.map((device) => answeringDevice(url, device)))));
    }
    const granted = await server.subscribeAsync(allDevicesTopic('events'), { qos: 1 });
    if (granted.some((grant) => grant.qos === 128))
      throw new Error(`${url} refused the baseline subscription`);
    const started = Date.now();
    for (const device of devices)
      server.publish(deviceTopic(device.id, 'desired'), String(Date.now()), { qos: 1 });
    rearm();
    await done;
    return {
      p50: percentile(rtts, 50),
      p99: percentile(rtts, 99),
      totalMs: lastReplyAt - started,
      replies: rtts.length,
    };
  } finally {
    clearTimeout(quiet);
    await Promise.all([...clients, server].map((client) => client.endAsync(true)));
  }
}

async function answeringDevice(url: string, device: { id: string; secret: string }): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    clientId: device.id,
    username: device.id,
    password: device.secret,
    reconnectPeriod: 0,
    connectTimeout: 60_000,
  });
  client.on('error', () => undefined);
  const granted = await client.subscribeAsync(deviceTopic(device.id, 'desired'), { qos: 1 });
  if (granted.some((grant) => grant.qos === 128))
    throw new Error(`${url} refused ${device.id}'s subscription`);
  client.on('message', (_topic, payload, packet) => {
    if (!packet.retain) client.publish(deviceTopic(device.id, 'events'), payload, { qos: 1 });
  });
  return client;
}
