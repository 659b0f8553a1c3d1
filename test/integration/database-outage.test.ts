import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { Healthz } from '../../protocol/api/fleet.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import {
  lockTable,
  type PostgresCluster,
  postgresBackend,
  postgresBackendAt,
  startPostgresCluster,
} from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** How long the database stays away in the outage test: longer than the watcher's steady ping pace. */
const OUTAGE_MS = 10_000;

const heartbeat = (sequence: number) =>
  JSON.stringify({
    at: Date.now(),
    uptimeSeconds: sequence,
    load: [0.1, 0.1, 0.1],
    memory: { totalBytes: 1_000_000, availableBytes: 500_000 },
    disk: { totalBytes: 8_000_000, freeBytes: 4_000_000 },
    cpuTemperatureCelsius: 45,
    agentRssBytes: 20_000_000,
  });

/** A device registered through the API, connected over MQTT, that notices if the broker drops it. */
async function connectedDevice(server: TestServer) {
  const created = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
    name: 'outage',
  });
  const id = created.body.device.id;
  const client: MqttClient = await connectDevice(server.mqttUrl, {
    clientId: id,
    username: id,
    password: created.body.secret,
  });
  const device = {
    id,
    client,
    disconnected: false,
    sent: 0,
    /** Publishes the next heartbeat, numbered by its uptime, and waits for the broker's PUBACK. */
    async publishHeartbeat() {
      device.sent++;
      await client.publishAsync(deviceTopic(id, 'health'), heartbeat(device.sent), { qos: 1 });
    },
  };
  client.on('close', () => {
    device.disconnected = true;
  });
  return device;
}

async function storedHeartbeats(server: TestServer, deviceId: string): Promise<number[]> {
  const rows = await server.db
    .selectFrom('health_samples')
    .select('uptime_seconds')
    .where('device_id', '=', deviceId)
    .orderBy('uptime_seconds')
    .execute();
  return rows.map((row) => row.uptime_seconds);
}

const sequence = (count: number) => Array.from({ length: count }, (_, index) => index + 1);

async function healthz(server: TestServer): Promise<{ status: number; body: Healthz }> {
  return server.api<Healthz>('GET', '/healthz', undefined, '');
}

async function droppedTelemetry(server: TestServer): Promise<number> {
  const metric = await server.metrics.telemetryDropped.get();
  return metric.values.reduce((sum, { value }) => sum + value, 0);
}

describe('PostgreSQL dropping the server’s connections', () => {
  let server: TestServer | undefined;
  let cluster: PostgresCluster | undefined;

  afterEach(async () => {
    try {
      await server?.dispose();
    } finally {
      server = undefined;
      await cluster?.dispose();
      cluster = undefined;
    }
  });

  it('keeps storing every heartbeat when its connections are terminated mid-ingest', async () => {
    server = await startTestServer(postgresBackend);
    const device = await connectedDevice(server);
    let terminated = 0;
    for (let round = 1; round <= 3; round++) {
      // The table lock holds a batch mid-write (its transaction open) when the sessions are ended.
      const lock = await lockTable(server.databaseUrl, 'health_samples');
      await Promise.all(Array.from({ length: 20 }, () => device.publishHeartbeat()));
      await eventually(`a batch of round ${round} waiting in its transaction`, async () =>
        (await lock.waitingWriters()) > 0 ? true : undefined,
      );
      terminated += await lock.terminateOthersAndRelease();
      await eventually(`the heartbeats of round ${round} stored`, async () =>
        (await storedHeartbeats(server!, device.id)).length === device.sent ? true : undefined,
      );
    }
    expect(terminated).toBeGreaterThan(0);
    expect(await storedHeartbeats(server, device.id)).toEqual(sequence(device.sent));
    expect(await droppedTelemetry(server)).toBe(0);
    expect(await healthz(server)).toMatchObject({
      status: 200,
      body: { status: 'ok', database: { state: 'up', reason: null } },
    });
    expect(device.disconnected).toBe(false);
    await device.client.endAsync();
  });

  it('answers /healthz degraded while the database is stopped, keeps MQTT up and stores what waited once it is back', async () => {
    cluster = await startPostgresCluster();
    server = await startTestServer(postgresBackendAt(cluster.url));
    const device = await connectedDevice(server);
    await device.publishHeartbeat();
    await eventually('the first heartbeat stored', async () =>
      (await storedHeartbeats(server!, device.id)).length === 1 ? true : undefined,
    );
    expect((await healthz(server)).status).toBe(200);

    await cluster.stop();
    const stoppedAt = Date.now();
    const degraded = await eventually('/healthz to answer 503', async () => {
      const answer = await healthz(server!);
      return answer.status === 503 ? answer.body : undefined;
    });
    expect(degraded).toMatchObject({ status: 'degraded', database: { state: 'down' } });
    expect(degraded.database.reason).toMatch(/^database unreachable: .+/);

    // Through the whole outage the server stays degraded and keeps taking heartbeats over MQTT.
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      await device.publishHeartbeat();
      expect((await healthz(server)).status).toBe(503);
    }

    await cluster.start();
    await eventually(
      '/healthz to answer 200 again',
      async () => ((await healthz(server!)).status === 200 ? true : undefined),
      15_000,
    );
    await device.publishHeartbeat();
    await eventually('every heartbeat stored, those sent during the outage too', async () =>
      (await storedHeartbeats(server!, device.id)).length === device.sent ? true : undefined,
    );
    expect(await storedHeartbeats(server, device.id)).toEqual(sequence(device.sent));
    expect(await droppedTelemetry(server)).toBe(0);
    expect(device.disconnected).toBe(false);
    expect(device.client.connected).toBe(true);
    await device.client.endAsync();
  });
});
