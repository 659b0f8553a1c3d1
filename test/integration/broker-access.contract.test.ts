import type { MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttSessionHealth } from '../../protocol/api/fleet.ts';
import { deviceTopic, SERVER_HELLO_TOPIC } from '../../protocol/topics.ts';
import { DynsecAdmin } from '../../server/broker/mosquitto/dynsec-admin.ts';
import { mayDevicePublish, mayDeviceSubscribe } from '../../server/broker/topic-acl.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { type BrokerForServer, brokerModes, type MqttCredential } from '../support/broker-modes.ts';
import { sqliteBackend } from '../support/databases.ts';
import {
  announceDevice,
  connectDevice,
  connectionRefusal,
  recordMessages,
  sleep,
} from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** Time for a broker to route a message if it were going to: the negative assertions wait this long. */
const ROUTING_GRACE_MS = 500;
/** A loaded two-core machine: patient deadlines, never timing-sensitive ones. */
const SLOW = 30_000;

/** Whether the broker granted the subscription (MQTT.js rejects a SUBACK 0x80). */
const granted = (client: MqttClient, filter: string) =>
  client.subscribeAsync(filter, { qos: 1 }).then(
    ([grant]) => grant !== undefined && grant.qos !== 128,
    () => false,
  );

/** Lines of a pino logger, to read what the server said at start. */
function capturingLogger() {
  const lines: Array<{ msg: string; devices?: number }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/**
 * Issue 14 item 1: who may do what on the fleet's broker, one suite for the embedded broker and
 * Mosquitto. Devices are created through the API, which is what hands their credential to the
 * broker; `topic-acl.ts` is the oracle for both.
 */
describe.each(brokerModes)('device access on the $name broker', (mode) => {
  let broker: BrokerForServer;
  let server: TestServer;
  const log = capturingLogger();
  const clients: MqttClient[] = [];
  let created: Array<{ device: DeviceRecord; secret: string }>;

  const createDevice = async (name: string) => {
    const response = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name,
    });
    expect(response.status).toBe(201);
    return response.body;
  };
  const credentialOf = (device: { device: DeviceRecord; secret: string }) => ({
    clientId: device.device.id,
    username: device.device.id,
    password: device.secret,
  });
  const connect = async (options: Parameters<typeof connectDevice>[1]) => {
    const client = await connectDevice(server.mqttUrl, options);
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  /** A client with the server's own credential, watching every device topic. */
  const observeDevices = async (credential: MqttCredential = broker.serverCredential(server.dataDir)) => {
    const observer = await connect({ ...credential, clientId: `observer-${clients.length}-${Date.now()}` });
    const seen = recordMessages(observer);
    expect(await granted(observer, 'boardfleet/v1/devices/#')).toBe(true);
    return seen;
  };

  beforeAll(async () => {
    broker = await mode.start();
    server = await startTestServer(sqliteBackend, broker.env, { logger: log.logger });
    created = [];
    for (const name of ['alpha', 'beta', 'gamma']) created.push(await createDevice(name));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true)));
    await server?.dispose();
    await broker?.dispose();
  });

  it("reports the server's own MQTT session connected in /healthz", async () => {
    const health = await server.api<{ mqtt: MqttSessionHealth }>('GET', '/healthz');
    expect(health.body.mqtt.state).toBe('connected');
  });

  it('accepts a device created through the API with its own credentials, and stores what it reports', async () => {
    const alpha = created[0]!;
    const client = await connect(credentialOf(alpha));
    await announceDevice(client, alpha.device.id);
    await eventually(
      'alpha online with its inventory',
      async () => {
        const { body } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${alpha.device.id}`);
        return body.online && body.inventory?.hostname === alpha.device.id;
      },
      SLOW,
    );
    await client.endAsync();
  });

  type Credential = ReturnType<typeof credentialOf>;
  it.each<[string, (own: Credential, other: Credential) => Credential]>([
    ['a wrong secret', (own) => ({ ...own, password: 'bfd_wrong' })],
    ['no password', (own) => ({ ...own, password: undefined as unknown as string })],
    ["another device's secret", (own, other) => ({ ...own, password: other.password })],
    [
      "another device's client id (taking over its session)",
      (own, other) => ({ ...own, clientId: other.clientId }),
    ],
    ['an unknown device id', (own) => ({ ...own, clientId: 'dev-nobody', username: 'dev-nobody' })],
    [
      'a client id and username containing +',
      (own) => ({ ...own, clientId: `${own.clientId}+`, username: `${own.username}+` }),
    ],
    [
      'a client id and username containing #',
      (own) => ({ ...own, clientId: `${own.clientId}#`, username: `${own.username}#` }),
    ],
    [
      'a client id and username containing /',
      (own) => ({ ...own, clientId: `${own.clientId}/x`, username: `${own.username}/x` }),
    ],
    [
      'the server username with a device secret',
      (own) => ({ ...own, clientId: 'boardfleet-server', username: 'boardfleet-server' }),
    ],
  ])('refuses a connection with %s', async (_label, change) => {
    const refusal = await connectionRefusal(
      server.mqttUrl,
      change(credentialOf(created[0]!), credentialOf(created[1]!)),
    );
    expect(refusal).toMatch(/Bad username or password|Identifier rejected|Not authorized/);
  });

  it('grants a device exactly the subscriptions topic-acl.ts allows, and delivers nothing through refused ones', async () => {
    const [alpha, beta] = [created[0]!.device.id, created[1]!.device.id];
    const client = await connect(credentialOf(created[0]!));
    const received = recordMessages(client);
    const filters = [
      deviceTopic(alpha, 'desired'),
      deviceTopic(alpha, 'commands'),
      SERVER_HELLO_TOPIC,
      '#',
      '+/#',
      '$SYS/#',
      '$SYS/broker/clients/connected',
      'boardfleet/#',
      'boardfleet/v1/server/#',
      'boardfleet/v1/devices/+/desired',
      'boardfleet/v1/devices/+/health',
      `boardfleet/v1/devices/${alpha}/#`,
      `boardfleet/v1/devices/${alpha}/+`,
      deviceTopic(alpha, 'health'),
      deviceTopic(beta, 'desired'),
      deviceTopic(beta, 'health'),
      `$share/spy/${deviceTopic(beta, 'health')}`,
    ];
    const answers = [];
    for (const filter of filters) answers.push({ filter, granted: await granted(client, filter) });
    expect(answers).toEqual(
      filters.map((filter) => ({ filter, granted: mayDeviceSubscribe(alpha, filter) })),
    );

    // Beta's heartbeat and a command for beta must not reach alpha; its own command must.
    const betaClient = await connect(credentialOf(created[1]!));
    await betaClient.publishAsync(deviceTopic(beta, 'health'), '{}', { qos: 1 });
    const sent = await server.api('POST', `/api/v1/devices/${beta}/commands`, { type: 'ping' });
    expect(sent.status).toBe(202);
    await server.api('POST', `/api/v1/devices/${alpha}/commands`, { type: 'ping' });
    await eventually('alpha receiving its own command', () =>
      received.some((message) => message.topic === deviceTopic(alpha, 'commands')),
    );
    await sleep(ROUTING_GRACE_MS);
    expect(received.map((message) => message.topic).filter((topic) => topic !== SERVER_HELLO_TOPIC)).toEqual([
      deviceTopic(alpha, 'commands'),
    ]);
  });

  it('passes on exactly the publishes topic-acl.ts allows a device', async () => {
    const [alpha, beta] = [created[0]!.device.id, created[1]!.device.id];
    const seen = await observeDevices();
    const probes = [
      ...['presence', 'inventory', 'health', 'events', 'desired', 'commands'].map((channel) =>
        deviceTopic(alpha, channel as 'health'),
      ),
      deviceTopic(beta, 'health'),
      deviceTopic(beta, 'commands'),
      deviceTopic(beta, 'desired'),
      `${deviceTopic(alpha, 'health')}/x`,
      SERVER_HELLO_TOPIC,
    ];
    // A refused publish closes the connection on one broker and is dropped quietly on the other
    // (MQTT 3.1.1 has no negative PUBACK): each probe gets its own connection, and waits for either.
    for (const topic of probes) {
      const client = await connect(credentialOf(created[0]!));
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      await Promise.race([client.publishAsync(topic, `probe ${topic}`, { qos: 1 }), closed]);
      client.end(true);
    }
    const marker = await connect(credentialOf(created[0]!));
    await marker.publishAsync(deviceTopic(alpha, 'events'), 'marker', { qos: 1 });
    await eventually('the marker at the observer', () =>
      seen.some((message) => message.payload === 'marker'),
    );
    await sleep(ROUTING_GRACE_MS);
    const passed = seen
      .filter((message) => message.payload.startsWith('probe '))
      .map((message) => message.topic);
    expect(passed).toEqual(probes.filter((topic) => mayDevicePublish(alpha, topic)));
  });

  it('drops a revoked device within a second of the answer, and refuses its reconnects for longer', async () => {
    const gamma = created[2]!;
    const client = await connect({
      ...credentialOf(gamma),
      reconnectPeriod: 100,
      reconnectOnConnackError: true,
    });
    let droppedAt = 0;
    let reconnects = 0;
    const refusals: string[] = [];
    client.on('close', () => (droppedAt ||= Date.now()));
    client.on('connect', () => (reconnects += 1));
    client.on('error', (error) => refusals.push(error.message));

    const revoked = await server.api<DeviceRecord>('POST', `/api/v1/devices/${gamma.device.id}/revoke`);
    const answeredAt = Date.now();
    expect(revoked.body.revokedAt).not.toBeNull();
    await eventually('gamma dropped', () => droppedAt > 0, SLOW);
    expect(droppedAt - answeredAt).toBeLessThan(1_000);
    await eventually(
      'reconnects refused for a second',
      () => refusals.length >= 2 && Date.now() - droppedAt >= 1_000,
      SLOW,
    );
    expect(reconnects).toBe(0);
    expect(refusals.every((message) => /Bad username or password|Not authorized/.test(message))).toBe(true);
    client.end(true);
    expect(await connectionRefusal(server.mqttUrl, credentialOf(gamma))).toMatch(
      /Bad username or password|Not authorized/,
    );
  });

  it("clears a deleted device's retained messages", async () => {
    const doomed = await createDevice('doomed');
    const client = await connect(credentialOf(doomed));
    await announceDevice(client, doomed.device.id);
    await client.endAsync();
    const watchRetained = async () => {
      const observer = await connect({
        ...broker.serverCredential(server.dataDir),
        clientId: `retained-${Date.now()}`,
      });
      const retained = recordMessages(observer);
      await observer.subscribeAsync(`boardfleet/v1/devices/${doomed.device.id}/#`, { qos: 1 });
      return retained;
    };
    const before = await watchRetained();
    await eventually('its retained presence and inventory', () => before.length >= 2, SLOW);

    expect((await server.api('POST', `/api/v1/devices/${doomed.device.id}/revoke`)).status).toBe(200);
    expect((await server.api('DELETE', `/api/v1/devices/${doomed.device.id}`)).status).toBe(200);
    const after = await watchRetained();
    await sleep(ROUTING_GRACE_MS);
    expect(after.filter((message) => message.payload !== '')).toEqual([]);
  });

  it('logs at start how many devices have no credential on the broker', async () => {
    const line = () => log.lines.find((entry) => /have no credential on that broker/.test(entry.msg));
    if (!broker.mosquitto) {
      // The embedded broker checks the database itself: every device has its credential there.
      expect(line()).toBeUndefined();
      return;
    }
    // A device whose broker client is gone stands for one registered before the switch.
    const admin = await DynsecAdmin.connect({
      url: broker.mosquitto.url,
      username: broker.env.BOARDFLEET_MQTT_ADMIN_USERNAME ?? '',
      password: broker.env.BOARDFLEET_MQTT_ADMIN_PASSWORD ?? '',
    });
    await admin.removeDevice(created[1]!.device.id);
    await admin.close();
    expect(line()).toBeUndefined();
    server = await server.restart();
    expect(line()).toMatchObject({ devices: 1 });
  });
});
