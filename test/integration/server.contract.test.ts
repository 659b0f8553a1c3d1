import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '../../protocol/topics.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { databaseBackends } from '../support/databases.ts';
import {
  announceDevice,
  connectDevice,
  connectionRefusal,
  recordMessages,
  sleep,
} from '../support/mqtt-device.ts';
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

/** A value only the refused or invalid messages carry, to prove none of them was stored. */
const SPOOF_MARKER = 424_242;

/** Time for the broker to route a message if it were going to: the negative assertions wait this long. */
const ROUTING_GRACE_MS = 300;

describe.each(databaseBackends)('server on $name', (backend) => {
  let server: TestServer;
  let created: Array<{ device: DeviceRecord; secret: string }>;

  const mqttOptions = (index: number) => ({
    clientId: created[index]?.device.id,
    username: created[index]?.device.id,
    password: created[index]?.secret,
  });

  beforeAll(async () => {
    server = await startTestServer(backend);
    created = [];
    for (const [name, tags] of [
      ['alpha', ['lab', 'pi']],
      ['beta', ['lab']],
      ['gamma', []],
    ] as const) {
      const response = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
        name,
        tags,
      });
      expect(response.status).toBe(201);
      created.push(response.body);
    }
  });

  afterAll(async () => {
    await server?.dispose();
  });

  describe('REST', () => {
    it('refuses requests without a valid operator token', async () => {
      expect((await server.api('GET', '/api/v1/devices', undefined, '')).status).toBe(401);
      expect((await server.api('GET', '/api/v1/devices', undefined, 'bft_wrong')).status).toBe(401);
    });

    it('lists devices filtered by tag', async () => {
      const { body } = await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?tag=lab');
      expect(body.devices.map((device) => device.name)).toEqual(['alpha', 'beta']);
    });

    it('rejects an invalid body listing the bad field', async () => {
      const response = await server.api<{ message: string }>('POST', '/api/v1/devices', {
        name: '',
        tags: ['a b'],
      });
      expect(response.status).toBe(400);
      expect(response.body.message).toContain('name:');
      expect(response.body.message).toContain('tags.0:');
    });

    it('answers 404 for an unknown device', async () => {
      const response = await server.api<{ message: string }>('GET', '/api/v1/devices/dev-nope');
      expect(response).toMatchObject({ status: 404, body: { message: 'device dev-nope not found' } });
    });

    it('lets a viewer read but not change', async () => {
      const viewer = await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'dashboard',
        role: 'viewer',
      });
      expect((await server.api('GET', '/api/v1/devices', undefined, viewer.body.token)).status).toBe(200);
      const refused = await server.api<{ message: string }>(
        'POST',
        '/api/v1/devices',
        { name: 'x' },
        viewer.body.token,
      );
      expect(refused).toMatchObject({
        status: 403,
        body: { message: 'this needs the operator role; the token has viewer' },
      });
    });

    it('serves the OpenAPI document, health and metrics', async () => {
      const docs = await server.api<{ paths: Record<string, unknown> }>(
        'GET',
        '/api/docs/openapi.json',
        undefined,
        '',
      );
      expect(Object.keys(docs.body.paths)).toContain('/api/v1/devices/{id}/health');
      expect((await server.api('GET', '/healthz', undefined, '')).body).toMatchObject({ status: 'ok' });
      const metrics = await fetch(`${server.httpUrl}/metrics`).then((response) => response.text());
      expect(metrics).toContain('boardfleet_connected_devices');
    });
  });

  describe('MQTT authentication and topic ACLs', () => {
    it('accepts a device with its own credentials', async () => {
      expect(await connectionRefusal(server.mqttUrl, mqttOptions(0))).toBeNull();
    });

    it.each([
      ['a wrong secret', (o: ReturnType<typeof mqttOptions>) => ({ ...o, password: 'bfd_wrong' })],
      ['no password', (o: ReturnType<typeof mqttOptions>) => ({ ...o, password: undefined })],
      [
        'a client id that differs from the username',
        (o: ReturnType<typeof mqttOptions>) => ({ ...o, clientId: 'dev-other' }),
      ],
      [
        'a client id containing +',
        (o: ReturnType<typeof mqttOptions>) => ({
          ...o,
          clientId: `${o.clientId}+`,
          username: `${o.username}+`,
        }),
      ],
      [
        'a client id containing #',
        (o: ReturnType<typeof mqttOptions>) => ({
          ...o,
          clientId: `${o.clientId}#`,
          username: `${o.username}#`,
        }),
      ],
      [
        'a client id containing /',
        (o: ReturnType<typeof mqttOptions>) => ({
          ...o,
          clientId: `${o.clientId}/x`,
          username: `${o.username}/x`,
        }),
      ],
      [
        'the server username with a device secret',
        (o: ReturnType<typeof mqttOptions>) => ({
          ...o,
          clientId: 'boardfleet-server',
          username: 'boardfleet-server',
        }),
      ],
    ])('refuses a connection with %s', async (_label, change) => {
      expect(await connectionRefusal(server.mqttUrl, change(mqttOptions(0)))).toMatch(
        /Bad username or password|Identifier rejected|Not authorized/,
      );
    });

    it('refuses wildcard, $SYS and cross-device subscriptions, and delivers nothing through them', async () => {
      const alpha = await connectDevice(server.mqttUrl, mqttOptions(0));
      const beta = await connectDevice(server.mqttUrl, mqttOptions(1));
      try {
        const received = recordMessages(alpha);
        const filters = [
          '#',
          '$SYS/#',
          'boardfleet/v1/devices/+/health',
          deviceTopic(created[1]!.device.id, 'desired'),
          deviceTopic(created[1]!.device.id, 'health'),
        ];
        for (const filter of filters) {
          // SUBACK 0x80: MQTT.js turns a refused grant into a rejected subscribe.
          await expect(alpha.subscribeAsync(filter, { qos: 1 }), filter).rejects.toThrow('Subscribe error');
        }
        await beta.publishAsync(
          deviceTopic(created[1]!.device.id, 'health'),
          JSON.stringify(health(Date.now())),
          { qos: 1 },
        );
        await sleep(ROUTING_GRACE_MS);
        expect(received).toEqual([]);
      } finally {
        await alpha.endAsync();
        await beta.endAsync();
      }
    });

    it("refuses a device publishing to another device's topics or its own server-to-device topics", async () => {
      const alphaId = created[0]!.device.id;
      const betaId = created[1]!.device.id;
      const beta = await connectDevice(server.mqttUrl, mqttOptions(1));
      // MQTT 3.1.1 has no negative PUBACK: the broker drops a refused publish and closes the client.
      // Each attempt gets its own connection, so every one of them reaches the broker and is judged.
      const refusedPublish = async (topic: string, payload: string) => {
        const alpha = await connectDevice(server.mqttUrl, mqttOptions(0));
        const closed = new Promise<void>((resolve) => alpha.once('close', () => resolve()));
        alpha.publish(topic, payload, { qos: 1 });
        await closed;
        alpha.end(true);
      };
      try {
        const betaReceived = recordMessages(beta);
        await beta.subscribeAsync([deviceTopic(betaId, 'desired'), deviceTopic(betaId, 'commands')], {
          qos: 1,
        });
        const spoofedCommand = JSON.stringify({ id: 'c1', issuedAt: Date.now(), type: 'ping' });
        await refusedPublish(deviceTopic(betaId, 'commands'), spoofedCommand);
        await refusedPublish(
          deviceTopic(betaId, 'health'),
          JSON.stringify({ ...health(Date.now()), uptimeSeconds: SPOOF_MARKER }),
        );
        await refusedPublish(deviceTopic(alphaId, 'commands'), spoofedCommand);
        await refusedPublish(deviceTopic(alphaId, 'desired'), JSON.stringify({ version: 1 }));
        await sleep(ROUTING_GRACE_MS);
        expect(betaReceived).toEqual([]);
        await server.ingest.drain();
        const stored = await server.api<{ samples: Array<{ uptimeSeconds: number }> }>(
          'GET',
          `/api/v1/devices/${betaId}/health?from=0`,
        );
        expect(stored.body.samples.filter((sample) => sample.uptimeSeconds === SPOOF_MARKER)).toEqual([]);
      } finally {
        await beta.endAsync();
      }
    });

    it('disconnects a revoked device and refuses its reconnection', async () => {
      const gamma = created[2]!;
      const client = await connectDevice(server.mqttUrl, mqttOptions(2));
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      const revoked = await server.api<DeviceRecord>('POST', `/api/v1/devices/${gamma.device.id}/revoke`);
      expect(revoked.body.revokedAt).not.toBeNull();
      await closed;
      expect(await connectionRefusal(server.mqttUrl, mqttOptions(2))).toMatch(/Bad username or password/);
    });
  });

  describe('telemetry', () => {
    it('stores presence, inventory and health, and serves the history', async () => {
      const alpha = created[0]!.device.id;
      const client = await connectDevice(server.mqttUrl, {
        ...mqttOptions(0),
        will: {
          topic: deviceTopic(alpha, 'presence'),
          payload: Buffer.from(
            JSON.stringify({ state: 'offline', reason: 'connection-lost', at: Date.now() }),
          ),
          qos: 1,
          retain: true,
        },
      });
      const inventory = await announceDevice(client, alpha, { hostname: 'alpha' });
      const sentAt = Date.now();
      await client.publishAsync(deviceTopic(alpha, 'health'), JSON.stringify(health(sentAt)), { qos: 1 });

      const details = await eventually('health stored', async () => {
        const { body } = await server.api<DeviceRecord & { latestHealth: unknown }>(
          'GET',
          `/api/v1/devices/${alpha}`,
        );
        return body.latestHealth ? body : undefined;
      });
      expect(details.online).toBe(true);
      expect(details.inventory).toEqual(inventory);
      expect(details.latestHealth).toMatchObject(health(sentAt));
      const online = await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?online=true');
      expect(online.body.devices.map((device) => device.id)).toEqual([alpha]);

      // A socket that dies without DISCONNECT fires the last-will: offline.
      client.stream.destroy();
      await eventually('offline after last-will', async () => {
        const { body } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${alpha}`);
        return body.online === false;
      });
      const presence = await server.api<{ changes: Array<{ state: string; reason: string }> }>(
        'GET',
        `/api/v1/devices/${alpha}/presence?from=0`,
      );
      expect(presence.body.changes.map((change) => `${change.state}:${change.reason}`)).toEqual([
        'online:started',
        'offline:connection-lost',
      ]);
    });

    it('marks a device that goes silent offline within 1.5× its keepalive', async () => {
      const alpha = created[0]!.device.id;
      const keepaliveSeconds = 1;
      const socket = await silentDevice(server.mqttPort, {
        clientId: alpha,
        username: alpha,
        password: created[0]!.secret,
        keepaliveSeconds,
        will: {
          topic: deviceTopic(alpha, 'presence'),
          payload: JSON.stringify({ state: 'offline', reason: 'connection-lost', at: Date.now() }),
        },
      });
      try {
        await eventually(
          'online',
          async () => (await server.api<DeviceRecord>('GET', `/api/v1/devices/${alpha}`)).body.online,
        );
        const silentSince = Date.now();
        await eventually(
          'offline after keepalive',
          async () => !(await server.api<DeviceRecord>('GET', `/api/v1/devices/${alpha}`)).body.online,
          5_000,
        );
        // 1.5 × keepalive, plus the time to store it and for this poll to see it.
        expect(Date.now() - silentSince).toBeLessThan(1.5 * keepaliveSeconds * 1000 + 500);
      } finally {
        socket.destroy();
      }
    });

    it('drops malformed and oversized payloads, counts them, and keeps serving', async () => {
      const beta = created[1]!.device.id;
      const client = await connectDevice(server.mqttUrl, mqttOptions(1));
      const before = await invalidPayloadCounts(server);
      await client.publishAsync(deviceTopic(beta, 'health'), '{"not json', { qos: 1 });
      await client.publishAsync(
        deviceTopic(beta, 'health'),
        JSON.stringify({ ...health(Date.now()), uptimeSeconds: SPOOF_MARKER, load: 'high' }),
        { qos: 1 },
      );
      await client.publishAsync(deviceTopic(beta, 'events'), JSON.stringify({ id: 'e', at: Date.now() }), {
        qos: 1,
      });
      // Oversized is refused by the broker itself, which then closes the connection.
      client.publish(deviceTopic(beta, 'inventory'), 'x'.repeat(70 * 1024), { qos: 1 });
      await eventually('invalid payloads counted', async () => {
        const after = await invalidPayloadCounts(server);
        return (
          after.notJson - before.notJson === 1 &&
          after.schema - before.schema === 2 &&
          after.oversized - before.oversized === 1
        );
      });
      client.end(true);
      // Still serving, and a valid message from another device is still stored.
      const alpha = await connectDevice(server.mqttUrl, mqttOptions(0));
      const at = Date.now() + 1;
      await alpha.publishAsync(deviceTopic(created[0]!.device.id, 'health'), JSON.stringify(health(at)), {
        qos: 1,
      });
      await eventually('valid health still stored', async () => {
        const { body } = await server.api<{ samples: Array<{ at: number }> }>(
          'GET',
          `/api/v1/devices/${created[0]!.device.id}/health?from=${at}`,
        );
        return body.samples.length === 1;
      });
      await alpha.endAsync();
      const stored = await server.api<{ samples: Array<{ uptimeSeconds: number }> }>(
        'GET',
        `/api/v1/devices/${beta}/health?from=0`,
      );
      expect(stored.body.samples.filter((sample) => sample.uptimeSeconds === SPOOF_MARKER)).toEqual([]);
    });

    it('stores a redelivered event once', async () => {
      const alpha = created[0]!.device.id;
      const client = await connectDevice(server.mqttUrl, mqttOptions(0));
      const event = JSON.stringify({ id: 'evt-1', at: Date.now(), type: 'test', message: 'hello' });
      await client.publishAsync(deviceTopic(alpha, 'events'), event, { qos: 1 });
      await client.publishAsync(deviceTopic(alpha, 'events'), event, { qos: 1 });
      await client.endAsync();
      await server.ingest.drain();
      const { body } = await server.api<{ events: Array<{ id: string }> }>(
        'GET',
        `/api/v1/devices/${alpha}/events?from=0`,
      );
      expect(body.events.map((stored) => stored.id)).toEqual(['evt-1']);
    });

    it('keeps devices and history across a restart, and marks them offline until they reconnect', async () => {
      const alpha = created[0]!.device.id;
      const client = await connectDevice(server.mqttUrl, mqttOptions(0));
      await client.publishAsync(
        deviceTopic(alpha, 'presence'),
        JSON.stringify({ state: 'online', reason: 'started', at: Date.now() }),
        { qos: 1 },
      );
      await eventually(
        'online',
        async () => (await server.api<DeviceRecord>('GET', `/api/v1/devices/${alpha}`)).body.online,
      );
      client.end(true);
      server = await server.restart();
      const { body } = await server.api<DeviceRecord & { latestHealth: unknown }>(
        'GET',
        `/api/v1/devices/${alpha}`,
      );
      expect(body.online).toBe(false);
      expect(body.latestHealth).not.toBeNull();
      expect(await connectionRefusal(server.mqttUrl, mqttOptions(0))).toBeNull();
    });
  });
});

/** Connects over a raw socket, announces itself online, then sends nothing: no PINGREQ, no DISCONNECT. */
async function silentDevice(
  port: number,
  options: {
    clientId: string;
    username: string;
    password: string;
    keepaliveSeconds: number;
    will: { topic: string; payload: string };
  },
): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(
    mqttPacket.generate({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: options.clientId,
      username: options.username,
      password: Buffer.from(options.password),
      keepalive: options.keepaliveSeconds,
      will: { topic: options.will.topic, payload: Buffer.from(options.will.payload), qos: 1, retain: true },
    }),
  );
  await new Promise((resolve) => socket.once('data', resolve));
  socket.write(
    mqttPacket.generate({
      cmd: 'publish',
      topic: options.will.topic,
      payload: Buffer.from(JSON.stringify({ state: 'online', reason: 'started', at: Date.now() })),
      qos: 0,
      retain: true,
      dup: false,
    }),
  );
  return socket;
}

async function invalidPayloadCounts(server: TestServer) {
  const text = await fetch(`${server.httpUrl}/metrics`).then((response) => response.text());
  const sum = (reason: string) =>
    text
      .split('\n')
      .filter(
        (line) =>
          line.startsWith('boardfleet_invalid_payloads_total{') && line.includes(`reason="${reason}"`),
      )
      .reduce((total, line) => total + Number(line.split(' ').at(-1)), 0);
  return { notJson: sum('not-json'), schema: sum('schema'), oversized: sum('oversized') };
}
