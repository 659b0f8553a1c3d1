import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '../../protocol/topics.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { sqliteBackend } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** A CONNECT fixed header announcing 268,435,455 bytes (256 MB), the largest MQTT allows. */
const HUGE_CONNECT_HEADER = Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]);
/** What each attacking socket offers at most; the old server read all of it. */
const OFFERED_BYTES = 64 * 2 ** 20;
/** Loopback socket buffers hold a few MB: a server that stops reading at once lets through less. */
const ACCEPTED_BOUND_BYTES = 16 * 2 ** 20;

interface Device {
  id: string;
  secret: string;
}

async function createDevice(server: TestServer, name: string): Promise<Device> {
  const response = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
    name,
    tags: [],
  });
  expect(response.status).toBe(201);
  return { id: response.body.device.id, secret: response.body.secret };
}

async function openSocket(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  // A reset is one of the ways the server closes: the tests watch 'close'.
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

const whenClosed = (socket: Socket) =>
  new Promise<void>((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));

/** Resolves when the server closes the socket, or with 'open' if it has not after `timeoutMs`. */
async function closedWithin(socket: Socket, timeoutMs: number): Promise<'closed' | 'open'> {
  if (socket.destroyed) return 'closed';
  let timer: NodeJS.Timeout | undefined;
  const verdict = await Promise.race([
    whenClosed(socket).then(() => 'closed' as const),
    new Promise<'open'>((resolve) => (timer = setTimeout(() => resolve('open'), timeoutMs))),
  ]);
  clearTimeout(timer);
  return verdict;
}

/** Sends the huge header, then zeros as fast as the server takes them, until closed or all offered. */
async function streamHugeConnect(port: number): Promise<{ closed: boolean; bytesWritten: number }> {
  const socket = await openSocket(port);
  const closed = whenClosed(socket);
  const chunk = Buffer.alloc(64 * 1024);
  socket.write(HUGE_CONNECT_HEADER);
  while (!socket.destroyed && socket.bytesWritten < OFFERED_BYTES) {
    if (!socket.write(chunk)) {
      await Promise.race([new Promise((resolve) => socket.once('drain', resolve)), closed]);
    }
  }
  const verdict = await closedWithin(socket, 10_000);
  const bytesWritten = socket.bytesWritten;
  socket.destroy();
  return { closed: verdict === 'closed', bytesWritten };
}

async function refusedCount(server: TestServer, kind: string): Promise<number> {
  const text = await fetch(`${server.httpUrl}/metrics`).then((response) => response.text());
  const line = text
    .split('\n')
    .find((row) => row.startsWith(`boardfleet_mqtt_refused_total{kind="${kind}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A device connects, and its QoS 1 heartbeat is acknowledged (accepted by the broker's checks). */
async function deviceStillConnects(server: TestServer, device: Device): Promise<void> {
  const client = await connectDevice(server.mqttUrl, {
    clientId: device.id,
    username: device.id,
    password: device.secret,
  });
  try {
    await client.publishAsync(
      deviceTopic(device.id, 'health'),
      JSON.stringify({
        at: Date.now(),
        uptimeSeconds: 1,
        load: [0, 0, 0],
        memory: { totalBytes: 1, availableBytes: 1 },
        disk: { totalBytes: 1, freeBytes: 1 },
        cpuTemperatureCelsius: null,
        agentRssBytes: 1,
      }),
      { qos: 1 },
    );
  } finally {
    await client.endAsync();
  }
}

describe('embedded broker limits before authentication', () => {
  let server: TestServer;
  let device: Device;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend, { BOARDFLEET_MQTT_CONNECT_TIMEOUT_MS: '1000' });
    device = await createDevice(server, 'legit');
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('closes sockets announcing a 256 MB CONNECT before buffering it, and keeps serving', async () => {
    const before = await refusedCount(server, 'packet-size');
    const attacks = await Promise.all(Array.from({ length: 5 }, () => streamHugeConnect(server.mqttPort)));
    for (const attack of attacks) {
      expect(attack.closed).toBe(true);
      expect(attack.bytesWritten).toBeLessThan(ACCEPTED_BOUND_BYTES);
    }
    expect((await refusedCount(server, 'packet-size')) - before).toBe(5);
    await deviceStillConnects(server, device);
  });

  it('closes a socket that sends no CONNECT, or only part of one, within the time limit', async () => {
    const before = await refusedCount(server, 'connect-timeout');
    const silent = await openSocket(server.mqttPort);
    const partial = await openSocket(server.mqttPort);
    // A CONNECT announcing 100 bytes, of which only 10 ever come.
    partial.write(Buffer.concat([Buffer.from([0x10, 100]), Buffer.alloc(10)]));
    const opened = Date.now();
    expect(await closedWithin(silent, 10_000)).toBe('closed');
    expect(await closedWithin(partial, 10_000)).toBe('closed');
    expect(Date.now() - opened).toBeGreaterThanOrEqual(900);
    await eventually('connect timeouts counted', async () =>
      (await refusedCount(server, 'connect-timeout')) - before === 2 ? true : undefined,
    );
  });
});

describe('embedded broker connection cap', () => {
  let server: TestServer;
  let devices: Device[];

  beforeAll(async () => {
    // Three connections: the server's own session, one device and one idle socket.
    server = await startTestServer(sqliteBackend, { BOARDFLEET_MQTT_MAX_CONNECTIONS: '3' });
    devices = [await createDevice(server, 'first'), await createDevice(server, 'second')];
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('refuses connections over the cap at once, counts them, and lets a device in when room frees', async () => {
    const first = await connectDevice(server.mqttUrl, {
      clientId: devices[0]!.id,
      username: devices[0]!.id,
      password: devices[0]!.secret,
    });
    const idle = await openSocket(server.mqttPort);
    const before = await refusedCount(server, 'connection-limit');
    const overCap = await openSocket(server.mqttPort);
    expect(await closedWithin(overCap, 5_000)).toBe('closed');
    expect(overCap.bytesRead).toBe(0);
    expect((await refusedCount(server, 'connection-limit')) - before).toBe(1);
    // The device already in keeps working.
    await first.publishAsync(deviceTopic(devices[0]!.id, 'presence'), '{}', { qos: 1 });
    await first.endAsync();
    idle.destroy();
    // Once the server has seen the sockets go, another device gets in.
    await eventually('second device connected', () =>
      deviceStillConnects(server, devices[1]!).then(() => true),
    );
  });
});
