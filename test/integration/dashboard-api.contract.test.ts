import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodePayload } from '../../protocol/codec.ts';
import type { Health, Inventory } from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import type { DeviceDeployment } from '../../protocol/api/devices.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import type { FleetSummary } from '../../protocol/api/fleet.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { databaseBackends, sqliteBackend } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { ProtocolDeviceDouble } from '../support/protocol-device-double.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const healthy: Health = {
  at: 0,
  uptimeSeconds: 100,
  load: [0.2, 0.2, 0.2],
  memory: { totalBytes: 1_000_000, availableBytes: 600_000 },
  disk: { totalBytes: 8_000_000, freeBytes: 4_000_000 },
  cpuTemperatureCelsius: 50,
  agentRssBytes: 30_000_000,
};

const fastWave = { soakSeconds: 0, errorThresholdPercent: 0, deviceTimeoutSeconds: 30 };

interface DeviceList {
  devices: DeviceRecord[];
  total: number;
  limit: number;
  offset: number;
}

interface LiveEventRecord {
  id: number;
  type: string;
  data: Record<string, unknown>;
}

/** A dashboard's view of `/api/v1/live`: fetch with the token in a header, read the stream, parse events. */
async function openLiveStream(server: TestServer, token: string, query = '') {
  const abort = new AbortController();
  const response = await fetch(`${server.httpUrl}/api/v1/live${query}`, {
    headers: { authorization: `Bearer ${token}` },
    signal: abort.signal,
  });
  const events: LiveEventRecord[] = [];
  const reading = (async () => {
    if (!response.body || response.status !== 200) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const field = (name: string) =>
            block
              .split('\n')
              .find((line) => line.startsWith(`${name}: `))
              ?.slice(name.length + 2);
          const type = field('event');
          if (type) events.push({ id: Number(field('id')), type, data: JSON.parse(field('data') ?? 'null') });
        }
      }
    } catch {
      // The client dropped the connection.
    }
  })();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    events,
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}

describe.each(databaseBackends)('dashboard API on $name', (backend) => {
  let server: TestServer;
  let viewerToken: string;
  let webDir: string;
  const clients: MqttClient[] = [];
  const doubles: ProtocolDeviceDouble[] = [];
  const ids: Record<string, string> = {};

  const api = <T>(method: string, path: string, body?: unknown, token?: string) =>
    server.api<T>(method, path, body, token);

  async function createDevice(name: string, options: { board?: string; tags?: string[] } = {}) {
    const { body } = await api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name,
      ...options,
    });
    ids[name] = body.device.id;
    return body;
  }

  /** Connects as the device over MQTT and reports presence, inventory and a heartbeat, as an agent does. */
  async function report(
    name: string,
    secret: string,
    state: {
      board: string;
      version?: string;
      health?: Partial<Health>;
      attached?: Inventory['attachedBoards'];
    },
  ) {
    const id = ids[name] as string;
    const client = await connectDevice(server.mqttUrl, { clientId: id, username: id, password: secret });
    clients.push(client);
    const publish = (channel: 'presence' | 'inventory' | 'health', payload: unknown) =>
      client.publishAsync(deviceTopic(id, channel), encodePayload(channel, payload as never), { qos: 1 });
    await publish('presence', { state: 'online', reason: 'started', at: Date.now() });
    await publish('inventory', {
      board: state.board,
      os: 'Debian 12',
      kernel: '6.1',
      architecture: 'arm64',
      agentVersion: '0.1.0',
      hostname: name,
      slots: state.version ? [{ name: 'app', artifact: 'app', version: state.version, active: true }] : [],
      attachedBoards: state.attached ?? [],
      at: Date.now(),
    });
    await publish('health', { ...healthy, ...state.health, at: Date.now() });
    return client;
  }

  beforeAll(async () => {
    webDir = mkdtempSync(join(tmpdir(), 'boardfleet-web-'));
    mkdirSync(join(webDir, 'assets'));
    writeFileSync(join(webDir, 'index.html'), '<!doctype html><title>Boardfleet</title><div id="app"></div>');
    writeFileSync(join(webDir, 'assets', 'app-1a2b3c.js'), 'console.log("dashboard")');
    server = await startTestServer(backend, { BOARDFLEET_WEB_DIR: webDir });
    viewerToken = (
      await api<{ token: string }>('POST', '/api/v1/operator-tokens', { name: 'wall screen', role: 'viewer' })
    ).body.token;

    const kitchen = await createDevice('Kitchen Pi', { tags: ['home'] });
    const garage = await createDevice('Garage Pi', { tags: ['home'] });
    const shed = await createDevice('Shed pi 2', { board: 'rpi-3b' });
    await createDevice('Attic', { board: 'rpi-zero-2w', tags: ['home'] });
    const stolen = await createDevice('Stolen Pi');
    const porch = await createDevice('Porch');
    await report('Kitchen Pi', kitchen.secret, { board: 'rpi-4b', version: '1.0.0' });
    await report('Garage Pi', garage.secret, {
      board: 'rpi-4b',
      version: '1.1.0',
      health: { disk: { totalBytes: 1000, freeBytes: 30 } },
    });
    await report('Shed pi 2', shed.secret, {
      board: 'rpi-3b',
      version: '1.0.0',
      attached: [{ port: '/dev/ttyACM0', board: 'uno', firmware: null, firmwareVersion: null }],
    });
    // Hot, then gone: an offline device's last heartbeat is not counted as failing health.
    const porchClient = await report('Porch', porch.secret, {
      board: 'rpi-4b',
      version: '1.0.0',
      health: { cpuTemperatureCelsius: 92 },
    });
    await porchClient.publishAsync(
      deviceTopic(ids.Porch as string, 'presence'),
      encodePayload('presence', { state: 'offline', reason: 'shutdown', at: Date.now() }),
      { qos: 1 },
    );
    await report('Stolen Pi', stolen.secret, { board: 'rpi-4b', version: '1.0.0' });
    await api('POST', `/api/v1/devices/${ids['Stolen Pi']}/revoke`);
    await eventually('the reports stored', async () => {
      await server.ingest.drain();
      const { body } = await api<DeviceList>('GET', '/api/v1/devices?version=1.0.0');
      const online = body.devices.filter((device) => device.online).map((device) => device.name);
      if (body.total !== 3 || online.length !== 2) return false;
      for (const name of ['Kitchen Pi', 'Garage Pi', 'Shed pi 2', 'Porch']) {
        const health = await api<{ samples: unknown[] }>('GET', `/api/v1/devices/${ids[name]}/health`);
        if (health.body.samples.length === 0) return false;
      }
      return true;
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true).catch(() => undefined)));
    await Promise.all(doubles.map((device) => device.close().catch(() => undefined)));
    await server?.dispose();
    rmSync(webDir, { recursive: true, force: true });
  });

  describe('fleet summary', () => {
    it('counts devices by presence, board and running version, and lists the ones with failing health', async () => {
      const { status, body } = await api<FleetSummary>(
        'GET',
        '/api/v1/fleet/summary',
        undefined,
        viewerToken,
      );
      expect(status).toBe(200);
      expect(body).toEqual({
        total: 5,
        online: 3,
        offline: 2,
        byBoard: { 'rpi-4b': 3, 'rpi-3b': 1, 'rpi-zero-2w': 1 },
        byVersion: { '1.0.0': 3, '1.1.0': 1, none: 1 },
        failingHealth: 2,
        failingDevices: [
          { id: ids['Garage Pi'], name: 'Garage Pi', reason: 'disk 97% full' },
          { id: ids['Shed pi 2'], name: 'Shed pi 2', reason: 'uno on /dev/ttyACM0 does not answer Firmata' },
        ],
      });
    });

    it('clears a failing device once a healthy heartbeat arrives', async () => {
      const garage = clients[1] as MqttClient;
      await garage.publishAsync(
        deviceTopic(ids['Garage Pi'] as string, 'health'),
        encodePayload('health', { ...healthy, at: Date.now() }),
        { qos: 1 },
      );
      const summary = await eventually('the garage healthy again', async () => {
        const { body } = await api<FleetSummary>('GET', '/api/v1/fleet/summary');
        return body.failingHealth === 1 ? body : undefined;
      });
      expect(summary.failingDevices.map((device) => device.name)).toEqual(['Shed pi 2']);
    });
  });

  describe('device list', () => {
    const names = async (query: string) => {
      const { status, body } = await api<DeviceList>(
        'GET',
        `/api/v1/devices?${query}`,
        undefined,
        viewerToken,
      );
      expect(status).toBe(200);
      return { names: body.devices.map((device) => device.name), total: body.total };
    };

    it('searches names and ids case-insensitively', async () => {
      expect(await names('q=PI&sort=name')).toEqual({
        names: ['Garage Pi', 'Kitchen Pi', 'Shed pi 2'],
        total: 3,
      });
      expect(await names(`q=${(ids.Attic as string).slice(-6).toUpperCase()}`)).toEqual({
        names: ['Attic'],
        total: 1,
      });
      // LIKE wildcards in the search text match only themselves.
      expect(await names('q=%25')).toEqual({ names: [], total: 0 });
      expect(await names('q=_')).toEqual({ names: [], total: 0 });
      // A blank search is no search.
      expect((await names('q=%20')).total).toBe(5);
    });

    it('filters by running version, reported board, tag and presence, with the total', async () => {
      expect(await names('version=1.0.0&sort=name')).toEqual({
        names: ['Kitchen Pi', 'Porch', 'Shed pi 2'],
        total: 3,
      });
      expect(await names('board=rpi-4b&online=true&sort=name')).toEqual({
        names: ['Garage Pi', 'Kitchen Pi'],
        total: 2,
      });
      // Attic never reported: it counts under the board it was registered with.
      expect(await names('board=rpi-zero-2w')).toEqual({ names: ['Attic'], total: 1 });
      expect(await names('tag=home&online=false')).toEqual({ names: ['Attic'], total: 1 });
    });

    it('pages in the chosen order and reports the total of every page', async () => {
      expect(await names('sort=name&limit=2')).toEqual({ names: ['Attic', 'Garage Pi'], total: 5 });
      expect(await names('sort=name&limit=2&offset=2')).toEqual({ names: ['Kitchen Pi', 'Porch'], total: 5 });
      expect(await names('sort=name&limit=2&offset=4')).toEqual({ names: ['Shed pi 2'], total: 5 });
      // Most recently seen first; Attic, never seen, last.
      const { body } = await api<DeviceList>('GET', '/api/v1/devices?sort=lastSeen');
      expect(body.devices.at(-1)).toMatchObject({ name: 'Attic', lastSeenAt: null });
      const seen = body.devices.slice(0, -1).map((device) => device.lastSeenAt as number);
      expect(seen).toHaveLength(4);
      expect(seen).toEqual([...seen].sort((a, b) => b - a));
    });

    it('rejects an unknown sort or filter, naming it', async () => {
      const sort = await api<{ message: string }>('GET', '/api/v1/devices?sort=age');
      expect(sort.status).toBe(400);
      expect(sort.body.message).toContain('sort:');
      const unknown = await api<{ message: string }>('GET', '/api/v1/devices?colour=red');
      expect(unknown.status).toBe(400);
      expect(unknown.body.message).toContain('colour');
    });
  });

  describe('deployment history, live stream and roles', () => {
    let rollouts: string[] = [];
    let double: ProtocolDeviceDouble;

    async function release(version: string): Promise<string> {
      const artifact = await uploadArtifact(server, randomBytes(512), {
        name: 'app',
        version,
        boards: ['rpi-4b'],
      });
      await api('POST', '/api/v1/releases', { name: `app-${version}`, artifacts: { 'rpi-4b': artifact.id } });
      return `app-${version}`;
    }

    async function rollOut(version: string, script: 'succeed' | 'fail') {
      double.script = script;
      const { body } = await api<{ id: string }>('POST', '/api/v1/rollouts', {
        release: await release(version),
        target: { deviceIds: [double.deviceId] },
        waves: [{ name: 'all', percent: 100, ...fastWave }],
      });
      rollouts = [...rollouts, body.id];
      return eventually(
        `rollout ${version} finished`,
        async () => {
          const { body: status } = await api<RolloutStatus>('GET', `/api/v1/rollouts/${body.id}`);
          return ['completed', 'paused'].includes(status.state) ? status : undefined;
        },
        20_000,
      );
    }

    it('streams hello, presence and throttled rollout progress to a viewer', async () => {
      const stream = await openLiveStream(server, viewerToken, '?health=none');
      try {
        expect(stream.status).toBe(200);
        expect(stream.contentType).toContain('text/event-stream');
        await eventually('hello', () => stream.events[0]?.type === 'hello');
        expect(stream.events[0]?.data.serverTime).toEqual(expect.any(Number));

        const created = await createDevice('Rollout target', { tags: ['rollout'] });
        double = new ProtocolDeviceDouble(created.device.id, created.secret, 'rpi-4b');
        doubles.push(double);
        await double.connect(server.mqttUrl);
        await server.ingest.drain();
        await eventually('presence online', () =>
          stream.events.some(
            (event) =>
              event.type === 'presence' &&
              event.data.deviceId === double.deviceId &&
              event.data.online === true,
          ),
        );

        const finished = await rollOut('1.0.0', 'succeed');
        expect(finished.state).toBe('completed');
        const progress = await eventually('the last rollout event says completed', () => {
          const last = stream.events.filter((event) => event.type === 'rollout').at(-1);
          return last?.data.state === 'completed' ? last : undefined;
        });
        expect(progress.data).toMatchObject({
          rolloutId: finished.id,
          waves: [
            { index: 0, name: 'all', state: 'succeeded', counts: { size: 1, committed: 1, failed: 0 } },
          ],
        });
        expect(stream.events.some((event) => event.type === 'device-event')).toBe(true);
        expect(stream.events.some((event) => event.type === 'health')).toBe(false);
        const eventIds = stream.events.map((event) => event.id);
        expect(eventIds).toEqual([...eventIds].sort((a, b) => a - b));
      } finally {
        await stream.close();
      }
    });

    it('says hello again after a dropped connection, and the new stream carries the events', async () => {
      const first = await openLiveStream(server, viewerToken, '?health=none');
      await eventually('first hello', () => first.events[0]?.type === 'hello');
      await first.close();
      const second = await openLiveStream(server, viewerToken, `?health=${double.deviceId}`);
      try {
        await eventually('hello after the reconnect', () => second.events[0]?.type === 'hello');
        expect(second.events[0]!.id).toBeGreaterThan(first.events[0]!.id);
        const seenBefore = first.events.length;
        const sample = await eventually('a health sample of the chosen device', () =>
          second.events.find((event) => event.type === 'health'),
        );
        expect(sample.data).toMatchObject({ deviceId: double.deviceId, sample: { uptimeSeconds: 1 } });
        expect(first.events).toHaveLength(seenBefore);
      } finally {
        await second.close();
      }
    });

    it("tells a token's name and role, for the sign-in page", async () => {
      expect(await api('GET', '/api/v1/me', undefined, viewerToken)).toEqual({
        status: 200,
        body: { name: 'wall screen', role: 'viewer' },
      });
      expect((await api('GET', '/api/v1/me', undefined, 'bft_unknown')).status).toBe(401);
    });

    it('refuses the stream without a token', async () => {
      const stream = await openLiveStream(server, '');
      expect(stream.status).toBe(401);
    });

    it("lists a device's deployments newest first, with version, outcome and reason", async () => {
      const failed = await rollOut('1.1.0', 'fail');
      expect(failed.devices[0]?.state).toBe('failed');
      const { status, body } = await api<{ deployments: DeviceDeployment[] }>(
        'GET',
        `/api/v1/devices/${double.deviceId}/deployments`,
        undefined,
        viewerToken,
      );
      expect(status).toBe(200);
      expect(body.deployments).toMatchObject([
        {
          rolloutId: rollouts[1],
          release: 'app-1.1.0',
          version: '1.1.0',
          state: 'failed',
          outcome: 'failed',
          reason: 'health check failed: app exited with status 1',
          attempt: 1,
        },
        {
          rolloutId: rollouts[0],
          release: 'app-1.0.0',
          version: '1.0.0',
          state: 'committed',
          outcome: 'committed',
        },
      ]);
      expect(body.deployments[0]!.notifiedAt).toEqual(expect.any(Number));
      expect((await api('GET', `/api/v1/devices/${ids.Attic}/deployments`)).body).toEqual({
        deviceId: ids.Attic,
        deployments: [],
      });
      expect((await api('GET', '/api/v1/devices/dev-nope/deployments')).status).toBe(404);
    });

    it('refuses a viewer rollout actions, build start and device changes, and changes nothing', async () => {
      const paused = rollouts[1] as string;
      const forbidden = { statusCode: 403, message: 'this needs the operator role; the token has viewer' };
      for (const action of ['resume', 'abort', 'approve', 'pause']) {
        const refused = await api('POST', `/api/v1/rollouts/${paused}/${action}`, undefined, viewerToken);
        expect({ action, ...refused }).toMatchObject({ action, status: 403, body: forbidden });
      }
      expect(
        await api('POST', '/api/v1/builds', { recipe: 'pi-minimal', board: 'qemu-virt-arm64' }, viewerToken),
      ).toMatchObject({ status: 403, body: forbidden });
      expect(
        await api('PATCH', `/api/v1/devices/${ids.Attic}`, { tags: ['moved'] }, viewerToken),
      ).toMatchObject({ status: 403, body: forbidden });

      expect((await api<RolloutStatus>('GET', `/api/v1/rollouts/${paused}`)).body.state).toBe('paused');
      expect((await api<{ builds: unknown[] }>('GET', '/api/v1/builds')).body.builds).toEqual([]);
      expect((await api<DeviceRecord>('GET', `/api/v1/devices/${ids.Attic}`)).body.tags).toEqual(['home']);
      // An operator may: the refusal was the role, not the request.
      expect((await api('POST', `/api/v1/rollouts/${paused}/abort`)).status).toBe(200);
    });
  });

  describe('the built dashboard', () => {
    const get = (path: string) => fetch(`${server.httpUrl}${path}`);

    it('serves index.html at / and at app routes, without a token', async () => {
      for (const path of ['/', '/devices/dev-123', '/rollouts']) {
        const response = await get(path);
        expect({ path, status: response.status }).toEqual({ path, status: 200 });
        expect(response.headers.get('content-type')).toContain('text/html');
        expect(await response.text()).toContain('<title>Boardfleet</title>');
      }
    });

    it('serves hashed assets as immutable, and a missing asset as 404 rather than the page', async () => {
      const asset = await get('/assets/app-1a2b3c.js');
      expect(asset.status).toBe(200);
      expect(asset.headers.get('content-type')).toContain('javascript');
      expect(asset.headers.get('cache-control')).toContain('immutable');
      expect((await get('/assets/app-gone.js')).status).toBe(404);
      // An encoded way out of the directory gets the page, never the file.
      const escape = await get('/..%2f..%2f..%2f..%2fetc%2fpasswd');
      expect(await escape.text()).toContain('<title>Boardfleet</title>');
    });

    it('keeps unknown API routes JSON 404s and API routes behind the token', async () => {
      for (const [method, path] of [
        ['GET', '/api/v1/nope'],
        ['POST', '/api/v1/nope'],
        ['GET', '/api'],
      ] as const) {
        const response = await fetch(`${server.httpUrl}${path}`, { method });
        expect({ path, status: response.status }).toEqual({ path, status: 404 });
        expect(response.headers.get('content-type')).toContain('application/json');
      }
      expect((await get('/api/v1/devices')).status).toBe(401);
      expect((await get('/healthz')).status).toBe(200);
    });
  });
});

describe('the dashboard not built', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(sqliteBackend, {
      BOARDFLEET_WEB_DIR: join(tmpdir(), 'boardfleet-no-such-web-dir'),
    });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('answers / with 503 naming the build command, while the API keeps working', async () => {
    const response = await server.api<{ message: string }>('GET', '/', undefined, '');
    expect(response.status).toBe(503);
    expect(response.body.message).toContain('npm run build:web');
    expect((await server.api('GET', '/api/v1/fleet/summary')).status).toBe(200);
  });
});
