/**
 * Live views across replicas, in one process: two LiveEventsService instances, each with its own
 * pool and change feed on one real PostgreSQL database, stand for two server replicas. Their
 * sources (ingest, rollout engine, build queue) are emitters the test drives; health samples are
 * really stored, as the ingest stores them, and read back by the other replica.
 */
import { EventEmitter } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pg from 'pg';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Health } from '../../protocol/schemas.ts';
import type { BuildQueueService } from '../../server/builds/build-queue.service.ts';
import { CHANGE_CHANNEL, PostgresChangeFeed } from '../../server/cluster/change-feed.ts';
import { systemClock } from '../../server/common/clock.ts';
import { type Database, migrateToLatest, openDatabase } from '../../server/db/database.ts';
import { DeviceRepository } from '../../server/devices/device.repository.ts';
import type { RolloutEngine } from '../../server/rollouts/rollout-engine.ts';
import type { RolloutProgressRepository } from '../../server/rollouts/rollout-progress.repository.ts';
import { type HealthToStore, TelemetryRepository } from '../../server/telemetry/telemetry.repository.ts';
import type { TelemetryIngestService } from '../../server/telemetry/telemetry-ingest.service.ts';
import { type LiveEvent, LiveEventsService } from '../../server/web/live-events.service.ts';
import { postgresBackend } from '../support/databases.ts';
import { eventually } from '../support/test-server.ts';

/** What one replica's live service listens to, and what it is made of. */
interface Replica {
  ingest: EventEmitter;
  engine: EventEmitter;
  builds: EventEmitter;
  telemetry: TelemetryRepository;
  live: LiveEventsService;
  feed: PostgresChangeFeed;
  db: Database;
}

/** The fleet size issue 14 measures, and the ingest's largest batch (telemetry-ingest.service.ts). */
const DEVICES = 10_000;
const INGEST_BATCH = 2_000;

const health = (at: number): Health => ({
  at,
  uptimeSeconds: 60,
  load: [0.1, 0.2, 0.3],
  memory: { totalBytes: 1_000_000, availableBytes: 500_000 },
  disk: { totalBytes: 8_000_000, freeBytes: 4_000_000 },
  cpuTemperatureCelsius: 45,
  agentRssBytes: 30_000_000,
});

describe('live views on two replicas sharing PostgreSQL', () => {
  let url: string;
  let drop: () => Promise<void>;
  const replicas: Replica[] = [];

  const startReplica = async (origin: string): Promise<Replica> => {
    const db = openDatabase(url);
    const feed = new PostgresChangeFeed(url, db, origin, pino({ level: 'silent' }));
    await feed.start();
    const ingest = new EventEmitter();
    const engine = new EventEmitter();
    const builds = new EventEmitter();
    const telemetry = new TelemetryRepository(db, new DeviceRepository(db));
    // The snapshot read is the one a local change makes (rollout-progress.repository.ts); here it says who read it.
    const progress = {
      progress: async (rolloutId: string) => ({ rolloutId, state: 'paused', reason: origin, waves: [] }),
    } as unknown as RolloutProgressRepository;
    const live = new LiveEventsService(
      ingest as TelemetryIngestService,
      engine as unknown as RolloutEngine,
      builds as unknown as BuildQueueService,
      progress,
      telemetry,
      feed,
      systemClock,
    );
    live.onModuleInit();
    const replica = { ingest, engine, builds, telemetry, live, feed, db };
    replicas.push(replica);
    return replica;
  };

  const watch = (replica: Replica, health?: string) => {
    const events: LiveEvent[] = [];
    replica.live.subscribe((event) => events.push(event), { health });
    return events;
  };

  beforeEach(async () => {
    ({ url, drop } = await postgresBackend.create());
    const db = openDatabase(url);
    await migrateToLatest(db);
    await db.destroy();
  });
  afterEach(async () => {
    for (const replica of replicas.splice(0)) {
      replica.live.onModuleDestroy();
      await replica.feed.stop();
      await replica.db.destroy();
    }
    await drop();
  });

  it("shows each replica's presence, device events, builds and rollouts on the other, once", async () => {
    const one = await startReplica('replica-1');
    const two = await startReplica('replica-2');
    const onOne = watch(one, 'none');
    const onTwo = watch(two, 'none');
    const bigEvent = { id: 'e-2', at: 2, type: 'log', message: 'm', data: { text: 'x'.repeat(30_000) } };

    one.ingest.emit('presence-changed', 'dev-1', true);
    one.ingest.emit('device-event', 'dev-1', { id: 'e-1', at: 1, type: 'boot' });
    one.ingest.emit('device-event', 'dev-1', bigEvent);
    one.engine.emit('rollout-changed', 'ro-1');
    two.builds.emit('status', buildJob('build-1'));
    one.ingest.emit('presence-changed', 'dev-1', false);

    const kinds = (events: LiveEvent[]) => events.map((event) => event.type);
    await eventually('the changes of replica 1 on replica 2', () => kinds(onTwo).length === 7);
    await eventually('the build of replica 2 on replica 1', () => kinds(onOne).includes('build'));
    const notBuild = onTwo.filter((event) => event.type !== 'build' && event.type !== 'rollout');
    expect(notBuild.map((event) => [event.type, event.data])).toEqual([
      ['hello', expect.anything()],
      ['presence', { deviceId: 'dev-1', online: true }],
      ['device-event', { deviceId: 'dev-1', event: { id: 'e-1', at: 1, type: 'boot' } }],
      ['device-event', { deviceId: 'dev-1', event: bigEvent }],
      ['presence', { deviceId: 'dev-1', online: false }],
    ]);
    // Replica 2 read the rollout's snapshot itself.
    expect(onTwo.find((event) => event.type === 'rollout')?.data).toMatchObject({
      rolloutId: 'ro-1',
      reason: 'replica-2',
    });
    // Nothing came back to its sender: each now sends one more change, and once each has seen
    // the other's (delivered in commit order), every earlier notification has reached both.
    one.ingest.emit('presence-changed', 'dev-2', true);
    two.ingest.emit('presence-changed', 'dev-3', true);
    const sawPresenceOf = (events: LiveEvent[], deviceId: string) =>
      events.some(
        (event) => event.type === 'presence' && (event.data as { deviceId: string }).deviceId === deviceId,
      );
    await eventually(
      'the last changes',
      () => sawPresenceOf(onOne, 'dev-3') && sawPresenceOf(onTwo, 'dev-2'),
    );
    expect(kinds(onOne).toSorted()).toEqual([
      'build',
      'device-event',
      'device-event',
      'hello',
      'presence',
      'presence',
      'presence',
      'presence',
      'rollout',
    ]);
    expect(kinds(onTwo)).toHaveLength(9);
  });

  it(`sends another replica's health of ${DEVICES} devices in a burst without stalling, in few notifications`, async () => {
    const one = await startReplica('replica-1');
    const two = await startReplica('replica-2');
    const fleetView = watch(two);
    const counter = await countNotifications(url);
    const delay = monitorEventLoopDelay({ resolution: 10 });
    try {
      const receivedAt = Date.now();
      const samples: HealthToStore[] = Array.from({ length: DEVICES }, (_, i) => ({
        deviceId: `dev-${String(i).padStart(12, '0')}`,
        health: health(receivedAt - 1_000),
        receivedAt: receivedAt + Math.floor(i / INGEST_BATCH),
      }));
      // Stored first (as the ingest does before it says so), so the burst measures the live path alone.
      for (let start = 0; start < DEVICES; start += INGEST_BATCH)
        await one.telemetry.insertHealth(samples.slice(start, start + INGEST_BATCH));

      delay.enable();
      const started = performance.now();
      let publishMs = 0;
      for (let start = 0; start < DEVICES; start += INGEST_BATCH) {
        const before = performance.now();
        one.ingest.emit('health-stored', samples.slice(start, start + INGEST_BATCH));
        publishMs = Math.max(publishMs, performance.now() - before);
      }
      const healthEvents = () => fleetView.filter((event) => event.type === 'health');
      await eventually('every device’s sample on replica 2', () => healthEvents().length === DEVICES, 30_000);
      const deliveredMs = performance.now() - started;
      delay.disable();

      const seen = new Set(healthEvents().map((event) => (event.data as { deviceId: string }).deviceId));
      expect(seen.size).toBe(DEVICES);
      expect(healthEvents()[0]?.data).toMatchObject({ sample: { receivedAt, cpuTemperatureCelsius: 45 } });
      console.log(
        `health burst of ${DEVICES} devices in ${DEVICES / INGEST_BATCH} ingest batches: ` +
          `${counter.count()} notifications (${counter.bytes()} bytes), on replica 2 after ${deliveredMs.toFixed(0)} ms; ` +
          `publishing a batch took at most ${publishMs.toFixed(1)} ms; ` +
          `event loop delay max ${(delay.max / 1e6).toFixed(0)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms`,
      );
      expect(counter.count()).toBeLessThanOrEqual(Math.ceil(DEVICES / 300) + DEVICES / INGEST_BATCH);
      expect(publishMs).toBeLessThan(100);
      // The reader works in chunks of 500 devices, awaiting the database between them.
      expect(delay.max / 1e6).toBeLessThan(1_000);
    } finally {
      await counter.stop();
    }
  });

  it("sends another replica's health only of the device a viewer watches", async () => {
    const one = await startReplica('replica-1');
    const two = await startReplica('replica-2');
    const deviceView = watch(two, 'dev-b');
    const receivedAt = Date.now();
    const samples = ['dev-a', 'dev-b', 'dev-c'].map((deviceId) => ({
      deviceId,
      health: health(receivedAt),
      receivedAt,
    }));
    await one.telemetry.insertHealth(samples);
    one.ingest.emit('health-stored', samples);
    await eventually('the watched device', () => deviceView.some((event) => event.type === 'health'));
    await two.live.remoteHealthSent();
    expect(deviceView.filter((event) => event.type === 'health').map((event) => event.data)).toEqual([
      { deviceId: 'dev-b', sample: { ...health(receivedAt), receivedAt } },
    ]);
  });
});

function buildJob(id: string) {
  return {
    id,
    recipe: 'blink',
    board: 'uno',
    state: 'running',
    step: 'compiling',
    progress: 0.5,
    error: null,
    outputs: [],
    createdAt: 1,
    startedAt: 2,
    finishedAt: null,
  };
}

/** Counts the notifications on the change channel, as a third listener. */
async function countNotifications(url: string) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  let count = 0;
  let bytes = 0;
  client.on('notification', (message) => {
    count++;
    bytes += Buffer.byteLength(message.payload ?? '');
  });
  await client.connect();
  await client.query(`LISTEN ${CHANGE_CHANNEL}`);
  return { count: () => count, bytes: () => bytes, stop: () => client.end() };
}
