import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allDevicesTopic, deviceTopic } from '../../protocol/topics.ts';
import { generateSecret } from '../common/secrets.ts';
import { DEFAULT_BROKER_LIMITS } from '../config/config.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ServerMetrics } from '../metrics/metrics.ts';
import { AuthRateLimiter } from './auth-rate-limiter.ts';
import { DeviceAuthenticator } from './device-authenticator.ts';
import { EmbeddedBroker, SERVER_MQTT_USERNAME } from './embedded-broker.ts';

const SERVER_SECRET = 'server-secret-for-the-overload-test';
const DEVICES = 20;
const MAX_PENDING = 500;
/**
 * A burst per device: Aedes handles each socket read (hundreds of small packets) at once, so
 * 20 devices put thousands of messages in flight. On main they queued inside Aedes behind the
 * stalled session and, when it dropped, were drained by recursion until the stack overflowed.
 */
const BURST_PER_DEVICE = 3_000;

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * A server session that subscribes to every heartbeat and then stops reading its socket, as a
 * session stuck behind a slow database would: the broker's writes to it back up.
 */
async function stalledSession(port: number): Promise<Socket> {
  const socket = connectTcp(port, '127.0.0.1');
  socket.on('error', () => {});
  let received = 0;
  const acknowledged = new Promise<void>((resolve) =>
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      // CONNACK (4 bytes) and SUBACK (5 bytes) in.
      if (received >= 9) resolve();
    }),
  );
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: 'stalled-session',
      clean: true,
      keepalive: 0,
      username: SERVER_MQTT_USERNAME,
      password: Buffer.from(SERVER_SECRET),
    }),
  );
  socket.write(
    mqttPacket.generate({
      cmd: 'subscribe',
      messageId: 1,
      subscriptions: [{ topic: allDevicesTopic('health'), qos: 0 }],
    }),
  );
  await acknowledged;
  socket.pause();
  return socket;
}

const total = async (metric: { get(): Promise<{ values: Array<{ value: number }> }> }) =>
  (await metric.get()).values.reduce((sum, sample) => sum + sample.value, 0);

describe('embedded broker under overload', () => {
  let dataDir: string;
  let db: Database;
  let broker: EmbeddedBroker;
  let metrics: ServerMetrics;
  let url: string;
  let devices: Array<{ id: string; secret: string }>;
  const clients: MqttClient[] = [];

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-overload-'));
    db = openDatabase(`sqlite:${join(dataDir, 'test.sqlite')}`);
    await migrateToLatest(db);
    const repository = new DeviceRepository(db);
    metrics = new ServerMetrics();
    const authenticator = new DeviceAuthenticator(
      repository,
      randomBytes(32),
      new AuthRateLimiter(),
      metrics,
    );
    devices = [];
    for (let index = 0; index < DEVICES; index++) {
      const device = { id: `dev-burst-${index}`, secret: generateSecret('bfd') };
      await repository.create({
        id: device.id,
        name: device.id,
        board: null,
        tags: [],
        secretHash: authenticator.hashSecret(device.secret),
        now: Date.now(),
      });
      devices.push(device);
    }
    broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      serverSecret: SERVER_SECRET,
      authenticator,
      limits: { ...DEFAULT_BROKER_LIMITS, maxPendingMessages: MAX_PENDING },
      metrics,
      logger: pino({ level: 'silent' }),
    });
    url = `mqtt://127.0.0.1:${await broker.start()}`;
  });

  afterEach(async () => {
    for (const client of clients.splice(0)) await client.endAsync(true);
    await broker?.disconnectDevices();
    await broker?.stop();
    await db?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  const connect = async (clientId: string, username: string, password: string) => {
    const client = await mqtt.connectAsync(url, {
      protocolVersion: 4,
      clientId,
      username,
      password,
      reconnectPeriod: 0,
      keepalive: 0,
    });
    clients.push(client);
    return client;
  };

  it('holds device sockets while the server session stalls, then sheds and counts when it drops', async () => {
    const stalled = await stalledSession(Number(new URL(url).port));

    const senders = await Promise.all(devices.map((device) => connect(device.id, device.id, device.secret)));
    const small = JSON.stringify({ at: Date.now(), filler: 'y'.repeat(64) });
    senders.forEach((client, index) => {
      const topic = deviceTopic(devices[index]!.id, 'health');
      for (let n = 0; n < BURST_PER_DEVICE; n++) client.publish(topic, small, { qos: 0 });
    });

    await until(
      'the broker to stop reading device sockets',
      async () => (await total(metrics.mqttBackpressure)) > 0,
    );
    expect(await total(metrics.mqttHeldPublishes)).toBeGreaterThan(0);

    // The stalled session goes away with its backlog: on main this overflowed the stack.
    stalled.destroy();
    // A QoS 1 publish is acknowledged only after every earlier publish of its device was handled.
    await Promise.all(
      senders.map((client, index) =>
        client.publishAsync(deviceTopic(devices[index]!.id, 'health'), small, { qos: 1 }),
      ),
    );
    expect(await total(metrics.mqttShed)).toBeGreaterThan(0);
    expect(await total(metrics.mqttHeldPublishes)).toBe(0);

    // Still serving: a new server session receives a device's heartbeat.
    const session = await connect('fresh-session', SERVER_MQTT_USERNAME, SERVER_SECRET);
    await session.subscribeAsync(allDevicesTopic('health'), { qos: 1 });
    const received = new Promise<string>((resolve) => session.once('message', (topic) => resolve(topic)));
    await senders[0]!.publishAsync(deviceTopic(devices[0]!.id, 'health'), small, { qos: 1 });
    expect(await received).toBe(deviceTopic(devices[0]!.id, 'health'));
  });
});
