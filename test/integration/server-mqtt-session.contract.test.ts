import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, MAX_PAYLOAD_BYTES } from '../../protocol/topics.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const health = (at: number) => ({
  at,
  uptimeSeconds: 100,
  load: [0.5, 0.4, 0.3],
  memory: { totalBytes: 1_000_000, availableBytes: 400_000 },
  disk: { totalBytes: 8_000_000, freeBytes: 2_000_000 },
  cpuTemperatureCelsius: 48.5,
  agentRssBytes: 30_000_000,
});

/** The old server never answered an oversized command: the request must not be allowed to hang the test. */
const COMMAND_ANSWER_TIMEOUT_MS = 5_000;

describe("the server's own MQTT session", () => {
  let server: TestServer;
  let device: { device: DeviceRecord; secret: string };

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    device = (await server.api<typeof device>('POST', '/api/v1/devices', { name: 'sensor' })).body;
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('refuses a command the broker could not carry with 413 and keeps storing telemetry', async () => {
    const id = device.device.id;
    const client = await connectDevice(server.mqttUrl, {
      clientId: id,
      username: id,
      password: device.secret,
    });
    try {
      const response = await fetch(`${server.httpUrl}/api/v1/devices/${id}/commands`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'report', args: { blob: 'x'.repeat(70 * 1024) } }),
        signal: AbortSignal.timeout(COMMAND_ANSWER_TIMEOUT_MS),
      });
      expect(response.status).toBe(413);
      const refusal = (await response.json()) as { code: string; message: string };
      expect(refusal.code).toBe('message-too-large');
      expect(refusal.message).toContain(`${MAX_PAYLOAD_BYTES} bytes`);

      const sentAt = Date.now();
      await client.publishAsync(deviceTopic(id, 'health'), JSON.stringify(health(sentAt)), { qos: 1 });
      const stored = await eventually('the heartbeat stored after the refused command', async () => {
        const { body } = await server.api<{ latestHealth: { at: number } | null }>(
          'GET',
          `/api/v1/devices/${id}`,
        );
        return body.latestHealth?.at === sentAt ? body.latestHealth : undefined;
      });
      expect(stored).toMatchObject(health(sentAt));

      const healthz = await server.api<{ status: string; mqtt: { state: string; since: number } }>(
        'GET',
        '/healthz',
        undefined,
        '',
      );
      expect(healthz.status).toBe(200);
      expect(healthz.body.mqtt.state).toBe('connected');
      expect(healthz.body.mqtt.since).toBeLessThanOrEqual(Date.now());
    } finally {
      await client.endAsync();
    }
  });

  it('still delivers a command that fits', async () => {
    const id = device.device.id;
    const client = await connectDevice(server.mqttUrl, {
      clientId: id,
      username: id,
      password: device.secret,
    });
    try {
      const received = new Promise<string>((resolve) =>
        client.on('message', (_topic, payload) => resolve(payload.toString())),
      );
      await client.subscribeAsync(deviceTopic(id, 'commands'), { qos: 1 });
      const sent = await server.api<{ id: string }>('POST', `/api/v1/devices/${id}/commands`, {
        type: 'report',
        args: { blob: 'x'.repeat(60 * 1024) },
      });
      expect(sent.status).toBe(202);
      expect(JSON.parse(await received)).toMatchObject({ id: sent.body.id, type: 'report' });
    } finally {
      await client.endAsync();
    }
  });
});
