import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '../../protocol/topics.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { DeviceRepository } from '../../server/devices/device.repository.ts';
import { MAX_DEVICE_CLOCK_AHEAD_MS } from '../../server/telemetry/device-clock.ts';
import { TelemetryRepository } from '../../server/telemetry/telemetry.repository.ts';
import { databaseBackends } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const YEAR_MS = 365 * 24 * 60 * 60 * 1000;

const health = (at: number) => ({
  at,
  uptimeSeconds: 100,
  load: [0.5, 0.4, 0.3],
  memory: { totalBytes: 1_000_000, availableBytes: 400_000 },
  disk: { totalBytes: 8_000_000, freeBytes: 2_000_000 },
  cpuTemperatureCelsius: null,
  agentRssBytes: 30_000_000,
});

interface StoredEvent {
  id: string;
  at: number;
  receivedAt: number;
  message: string | null;
  data: Record<string, unknown> | null;
}

describe.each(databaseBackends)('what devices send, stored on $name', (backend) => {
  let server: TestServer;
  let device: MqttClient;
  let deviceId: string;

  const publish = (channel: 'health' | 'events' | 'inventory', payload: string) =>
    device.publishAsync(deviceTopic(deviceId, channel), payload, { qos: 1 });
  const storedEvents = async () =>
    (
      await server.api<{ events: StoredEvent[] }>(
        'GET',
        `/api/v1/devices/${deviceId}/events?from=0&to=${Date.now() + 2 * YEAR_MS}`,
      )
    ).body.events;
  const storedEvent = (id: string) =>
    eventually(`event ${id} stored`, async () => (await storedEvents()).find((event) => event.id === id));
  const invalidPayloads = async (reason: string) => {
    const text = await fetch(`${server.httpUrl}/metrics`).then((response) => response.text());
    const line = text
      .split('\n')
      .find(
        (candidate) =>
          candidate.startsWith('boardfleet_invalid_payloads_total{') &&
          candidate.includes(`reason="${reason}"`),
      );
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  beforeAll(async () => {
    server = await startTestServer(backend);
    const created = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name: 'clockwork',
    });
    deviceId = created.body.device.id;
    device = await connectDevice(server.mqttUrl, {
      clientId: deviceId,
      username: deviceId,
      password: created.body.secret,
    });
  });
  afterAll(async () => {
    await device?.endAsync();
    await server?.dispose();
  });

  it('clamps a heartbeat stamped years ahead, and retention still deletes it by the server time', async () => {
    const sentAt = Date.now();
    await publish('health', JSON.stringify(health(sentAt + 10 * YEAR_MS)));
    const [sample] = await eventually('heartbeat stored', async () => {
      await server.ingest.drain();
      const { body } = await server.api<{ samples: Array<{ at: number; receivedAt: number }> }>(
        'GET',
        `/api/v1/devices/${deviceId}/health?from=0&to=${sentAt + 20 * YEAR_MS}`,
      );
      return body.samples.length > 0 && body.samples;
    });
    expect(sample!.receivedAt).toBeGreaterThanOrEqual(sentAt);
    expect(sample!.at).toBe(sample!.receivedAt + MAX_DEVICE_CLOCK_AHEAD_MS);

    // The retention period has passed for everything received until now.
    const telemetry = new TelemetryRepository(server.db, new DeviceRepository(server.db));
    expect(await telemetry.deleteHealthBefore(Date.now() + 1)).toBe(1);
    expect(await telemetry.latestHealth(deviceId)).toBeNull();
  });

  it('clamps an event stamped ahead, and keeps the time of an event that waited offline', async () => {
    const sentAt = Date.now();
    await publish('events', JSON.stringify({ id: 'future', at: sentAt + YEAR_MS, type: 'note' }));
    await publish('events', JSON.stringify({ id: 'queued', at: sentAt - YEAR_MS, type: 'note' }));
    const future = await storedEvent('future');
    expect(future.at).toBe(future.receivedAt + MAX_DEVICE_CLOCK_AHEAD_MS);
    expect((await storedEvent('queued')).at).toBe(sentAt - YEAR_MS);
  });

  it('counts a deeply nested event as an invalid payload and stores nothing of it', async () => {
    const before = await invalidPayloads('too-deep');
    const depth = 20_000;
    await publish(
      'events',
      `{"id":"deep","at":${Date.now()},"type":"note","data":{"v":${'['.repeat(depth)}${']'.repeat(depth)}}}`,
    );
    await eventually('too-deep counted', async () => (await invalidPayloads('too-deep')) === before + 1);
    await server.ingest.drain();
    expect((await storedEvents()).map((event) => event.id)).not.toContain('deep');
  });

  it('stores an event and an inventory with NUL characters, without them', async () => {
    await publish(
      'events',
      JSON.stringify({
        id: 'nul\u0000',
        at: Date.now(),
        type: 'deployment',
        deploymentId: 'dep\u00001',
        message: "command '\u0000' answered 0x00",
        data: { state: 'failed', 'raw\u0000': ['\u0000x'] },
      }),
    );
    await publish(
      'inventory',
      JSON.stringify({
        board: 'rpi-4b\u0000',
        os: 'Debian',
        kernel: '6.1',
        architecture: 'arm64',
        agentVersion: '1.0.0',
        hostname: 'pi\u0000-lab',
        slots: [],
        attachedBoards: [],
        at: Date.now(),
      }),
    );
    expect(await storedEvent('nul')).toMatchObject({
      message: "command '' answered 0x00",
      data: { state: 'failed', raw: ['x'] },
    });
    const inventory = await eventually('inventory stored', async () => {
      const { body } = await server.api<{ inventory: { hostname: string } | null }>(
        'GET',
        `/api/v1/devices/${deviceId}`,
      );
      return body.inventory ?? undefined;
    });
    expect(inventory.hostname).toBe('pi-lab');
  });
});
