/**
 * Issue 14 item 5, "Live views", with real processes: two `boardfleet server` replicas on one
 * PostgreSQL database, one data folder and one Mosquitto. A dashboard's stream on replica 2 shows
 * a device going online and offline when replica 1 ingested it (device messages go to one replica
 * of the shared subscription), and a rollout an operator paused through replica 1.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '../../protocol/topics.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { type BrokerForServer, startMosquittoForServer } from '../support/broker-modes.ts';
import { postgresBackend } from '../support/databases.ts';
import { announceDevice, connectDevice } from '../support/mqtt-device.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const TAG = 'live-replicas';
/** Shared subscriptions deal messages out in turn; this many toggles are far more than two replicas need. */
const MAX_TOGGLES = 20;

interface StreamEvent {
  type: string;
  data: Record<string, unknown>;
}

describe('live views across two server replicas on PostgreSQL and Mosquitto', () => {
  let broker: BrokerForServer & { mosquitto: NonNullable<BrokerForServer['mosquitto']> };
  let one: ServerProcess;
  let two: ServerProcess;
  let stream: Awaited<ReturnType<typeof openLiveStream>>;
  let device: MqttClient;
  let deviceId: string;

  beforeAll(async () => {
    broker = await startMosquittoForServer();
    // Replica 1's presence log lines say which changes it ingested itself.
    const env = { ...broker.env, LOG_LEVEL: 'info', LOG_FORMAT: 'json' };
    one = await startServerProcess(postgresBackend, { env });
    two = await startServerProcess(postgresBackend, { env, shareWith: one });
    stream = await openLiveStream(two, '?health=none');
    const created = await one.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'watched-pi',
      tags: [TAG],
    });
    expect(created.status).toBe(201);
    deviceId = created.body.device.id;
    device = await connectDevice(broker.mosquitto.url, {
      clientId: deviceId,
      username: deviceId,
      password: created.body.secret,
    });
    device.on('error', () => undefined);
  }, 180_000);

  afterAll(async () => {
    await device?.endAsync();
    await stream?.close();
    await two?.dispose();
    await one?.dispose();
    await broker?.dispose();
  });

  const presenceOnTwo = () =>
    stream.events.filter((event) => event.type === 'presence' && event.data.deviceId === deviceId);
  /** The presence changes replica 1 stored, from its own log. */
  const ingestedByOne = () =>
    one
      .output()
      .split('\n')
      .filter((line) => line.includes('"presence changed"') && line.includes(deviceId))
      .map((line) => /"state":"(online|offline)"/.exec(line)?.[1]);

  it('shows on replica 2 a device going online and offline that replica 1 ingested', async () => {
    await announceDevice(device, deviceId, { board: BOARD });
    await eventually(
      'the device online on replica 2',
      () => presenceOnTwo().at(-1)?.data.online === true,
      30_000,
    );
    let online = true;
    for (let toggle = 1; new Set(ingestedByOne()).size < 2; toggle++) {
      if (toggle > MAX_TOGGLES)
        throw new Error(`replica 1 ingested only ${ingestedByOne().join(', ')} after ${MAX_TOGGLES} toggles`);
      online = !online;
      const seen = presenceOnTwo().length;
      await device.publishAsync(
        deviceTopic(deviceId, 'presence'),
        JSON.stringify({
          state: online ? 'online' : 'offline',
          reason: online ? 'started' : 'shutdown',
          at: Date.now(),
        }),
        { qos: 1, retain: true },
      );
      await eventually(
        `presence ${online ? 'online' : 'offline'} on replica 2`,
        () => presenceOnTwo().length > seen && presenceOnTwo().at(-1)?.data.online === online,
        30_000,
      );
    }
    expect(new Set(ingestedByOne())).toEqual(new Set(['online', 'offline']));
    // Every change either replica stored reached replica 2's stream once, in order.
    const states = presenceOnTwo().map((event) => event.data.online);
    expect(states.every((state, i) => i === 0 || state !== states[i - 1])).toBe(true);
    if (!online) {
      await device.publishAsync(
        deviceTopic(deviceId, 'presence'),
        JSON.stringify({ state: 'online', reason: 'started', at: Date.now() }),
        { qos: 1, retain: true },
      );
      await eventually('the device online again', () => presenceOnTwo().at(-1)?.data.online === true, 30_000);
    }
  }, 120_000);

  it('shows on replica 2 a rollout paused through replica 1', async () => {
    const { release } = await releaseAppBundle(one, BOARD, { name: 'live-app', version: '1.0.0' });
    const created = await one.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: [TAG] },
      waves: [{ name: 'all', percent: 100, soakSeconds: 60 }],
    });
    expect(created.status).toBe(201);
    const rolloutOnTwo = (state: string) =>
      stream.events.find(
        (event) =>
          event.type === 'rollout' && event.data.rolloutId === created.body.id && event.data.state === state,
      );
    await eventually('the running rollout on replica 2', () => rolloutOnTwo('running'), 30_000);
    const paused = await one.api<{ state: string }>('POST', `/api/v1/rollouts/${created.body.id}/pause`);
    expect(paused.body.state).toBe('paused');
    await eventually('the paused rollout on replica 2', () => rolloutOnTwo('paused'), 30_000);
  }, 120_000);
});

/** A dashboard's view of `/api/v1/live` on one server: the events it has received so far. */
async function openLiveStream(server: ServerProcess, query: string) {
  const abort = new AbortController();
  const response = await fetch(`${server.httpUrl}/api/v1/live${query}`, {
    headers: { authorization: `Bearer ${server.adminToken}` },
    signal: abort.signal,
  });
  expect(response.status).toBe(200);
  const events: StreamEvent[] = [];
  const reading = (async () => {
    if (!response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const lines = buffer.slice(0, end).split('\n');
          buffer = buffer.slice(end + 2);
          const field = (name: string) =>
            lines.find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
          const type = field('event');
          if (type)
            events.push({ type, data: JSON.parse(field('data') ?? 'null') as Record<string, unknown> });
        }
      }
    } catch {
      // The test closed the stream.
    }
  })();
  return {
    events,
    close: async () => {
      abort.abort();
      await reading;
    },
  };
}
