import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { allDevicesTopic, deviceTopic } from '../../protocol/topics.ts';
import { generateSecret } from '../common/secrets.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ServerMetrics } from '../metrics/metrics.ts';
import { AuthRateLimiter } from './auth-rate-limiter.ts';
import { DeviceAuthenticator } from './device-authenticator.ts';
import { EmbeddedBroker, SERVER_MQTT_USERNAME } from './embedded-broker.ts';
import { ServerMqttClient } from './server-mqtt-client.ts';

const DEVICE_ID = 'dev-session';
const SERVER_SECRET = 'server-secret-for-the-test';

/** Waits for `check` to hold, polling: the broker and the client reconnect on their own timers. */
async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("the server's MQTT session on the embedded broker", () => {
  let dataDir: string;
  let db: Database;
  let broker: EmbeddedBroker;
  let metrics: ServerMetrics;
  let session: ServerMqttClient;
  let received: string[];
  let device: MqttClient;
  let url: string;
  const others: MqttClient[] = [];

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-session-'));
    db = openDatabase(`sqlite:${join(dataDir, 'test.sqlite')}`);
    await migrateToLatest(db);
    const devices = new DeviceRepository(db);
    metrics = new ServerMetrics();
    const authenticator = new DeviceAuthenticator(devices, randomBytes(32), new AuthRateLimiter(), metrics);
    const secret = generateSecret('bfd');
    await devices.create({
      id: DEVICE_ID,
      name: 'sensor',
      board: null,
      tags: [],
      secretHash: authenticator.hashSecret(secret),
      now: Date.now(),
    });
    const logger = pino({ level: 'silent' });
    broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      serverSecret: SERVER_SECRET,
      authenticator,
      metrics,
      logger,
    });
    url = `mqtt://127.0.0.1:${await broker.start()}`;
    received = [];
    session = new ServerMqttClient({
      url,
      secret: SERVER_SECRET,
      metrics,
      logger,
      onDeviceMessage: (topic) => received.push(topic),
    });
    await session.start();
    device = await mqtt.connectAsync(url, {
      protocolVersion: 4,
      clientId: DEVICE_ID,
      username: DEVICE_ID,
      password: secret,
      reconnectPeriod: 0,
    });
  });

  afterEach(async () => {
    for (const client of [device, ...others.splice(0)]) await client?.endAsync(true);
    await session?.stop();
    await broker?.disconnectDevices();
    await broker?.stop();
    await db?.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('gives a connection that takes over the server client id its subscriptions', async () => {
    const reconnect = await mqtt.connectAsync(url, {
      protocolVersion: 4,
      clientId: session.clientId,
      username: SERVER_MQTT_USERNAME,
      password: SERVER_SECRET,
      reconnectPeriod: 0,
    });
    others.push(reconnect);
    const granted = await reconnect.subscribeAsync(allDevicesTopic('health'), { qos: 1 });
    expect(granted.map((grant) => grant.qos)).toEqual([1]);
  });

  it('gets its session back after another connection took over its client id, and receives telemetry', async () => {
    const intruder = await mqtt.connectAsync(url, {
      protocolVersion: 4,
      clientId: session.clientId,
      username: SERVER_MQTT_USERNAME,
      password: SERVER_SECRET,
      reconnectPeriod: 0,
    });
    others.push(intruder);
    await until(
      'the session to notice it lost its connection',
      () => session.health().state === 'reconnecting',
    );
    await until('the session to connect again', () => session.health().state === 'connected');
    await until('the session to take its client id back', () => !intruder.connected);

    const topic = deviceTopic(DEVICE_ID, 'health');
    await until('a device heartbeat to reach the session', async () => {
      await device.publishAsync(topic, '{}', { qos: 1 });
      return received.includes(topic);
    });
    const connected = await metrics.connectedDevices.get();
    expect(connected.values[0]?.value).toBe(1);
  });
});
