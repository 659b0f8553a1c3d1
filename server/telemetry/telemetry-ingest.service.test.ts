import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { deviceTopic } from '../../protocol/topics.ts';
import { DatabaseHealth } from '../db/database-health.ts';
import { ServerMetrics } from '../metrics/metrics.ts';
import type { HealthToStore, TelemetryRepository } from './telemetry.repository.ts';
import { TelemetryIngestService } from './telemetry-ingest.service.ts';

const logger = pino({ level: 'silent' });
const refused = () =>
  Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });

const heartbeat = (uptimeSeconds: number) =>
  Buffer.from(
    JSON.stringify({
      at: 1_700_000_000_000,
      uptimeSeconds,
      load: [0, 0, 0],
      memory: { totalBytes: 100, availableBytes: 50 },
      disk: { totalBytes: 100, freeBytes: 50 },
      cpuTemperatureCelsius: null,
      agentRssBytes: 1,
    }),
  );

/**
 * The repository's stand-in: a database that can be away (writes and pings refused) or answer,
 * and can fail one write for a reason of its own.
 */
class FakeDatabase {
  away = false;
  failNextWrite: Error | null = null;
  readonly stored: number[] = [];

  readonly telemetry = {
    insertHealth: async (samples: HealthToStore[]) => {
      if (this.away) throw refused();
      const failure = this.failNextWrite;
      this.failNextWrite = null;
      if (failure) throw failure;
      this.stored.push(...samples.map((sample) => sample.health.uptimeSeconds));
    },
    insertEvents: async (events: Array<{ event: { id: string } }>) => {
      if (this.away) throw refused();
      this.events.push(...events.map(({ event }) => event.id));
    },
  } as unknown as TelemetryRepository;
  readonly events: string[] = [];

  readonly health = new DatabaseHealth(async () => {
    if (this.away) throw refused();
  }, logger);
}

async function dropped(metrics: ServerMetrics): Promise<Record<string, number>> {
  const { values } = await metrics.telemetryDropped.get();
  return Object.fromEntries(values.map(({ labels, value }) => [`${labels.channel}/${labels.reason}`, value]));
}

describe('TelemetryIngestService while the database comes and goes', () => {
  let database: FakeDatabase;
  let metrics: ServerMetrics;
  let ingest: TelemetryIngestService;

  const receive = (from: number, to: number) => {
    for (let uptime = from; uptime <= to; uptime++)
      ingest.handleMessage(deviceTopic('dev-1', 'health'), heartbeat(uptime));
  };

  const start = () => {
    database = new FakeDatabase();
    metrics = new ServerMetrics();
    ingest = new TelemetryIngestService(database.telemetry, metrics, database.health, logger);
  };

  afterEach(() => {
    database.health.stop();
  });

  it('keeps heartbeats while the database is away and stores them, in order, once it answers', async () => {
    start();
    database.away = true;
    receive(1, 3);
    const flushed = ingest.flushHealth();
    await expect.poll(() => database.health.state).toBe('down');
    receive(4, 5);

    database.away = false;
    await database.health.check();
    await flushed;
    await ingest.drain();
    expect(database.stored).toEqual([1, 2, 3, 4, 5]);
    expect(await dropped(metrics)).toEqual({});
  });

  it('stores events that arrived while the database was away, in arrival order, once it answers', async () => {
    start();
    database.away = true;
    for (const id of ['evt-1', 'evt-2', 'evt-3'])
      ingest.handleMessage(
        deviceTopic('dev-1', 'events'),
        Buffer.from(JSON.stringify({ id, at: 1_700_000_000_000, type: 'test' })),
      );
    await expect.poll(() => database.health.state).toBe('down');

    database.away = false;
    await database.health.check();
    await ingest.drain();
    expect(database.events).toEqual(['evt-1', 'evt-2', 'evt-3']);
    expect(await dropped(metrics)).toEqual({});
  });

  it('drops a batch that fails for a reason of its own instead of retrying it forever', async () => {
    start();
    database.failNextWrite = Object.assign(new Error('value out of range'), { code: '22003' });
    receive(1, 2);
    await ingest.drain();
    receive(3, 3);
    await ingest.drain();
    expect(database.stored).toEqual([3]);
    expect(await dropped(metrics)).toEqual({ 'health/write-failed': 2 });
  });

  it('counts the heartbeats it has no room for while the database is away', async () => {
    start();
    database.away = true;
    await database.health.check();
    receive(1, 50_010);
    expect(await dropped(metrics)).toEqual({ 'health/buffer-full': 10 });

    database.away = false;
    await database.health.check();
    await ingest.drain();
    expect(database.stored).toHaveLength(50_000);
    expect(database.stored.at(-1)).toBe(50_000);
  });

  it('stops without waiting for a database that is away, counting what it could not store', async () => {
    start();
    database.away = true;
    await database.health.check();
    receive(1, 4);
    await ingest.stop();
    expect(database.stored).toEqual([]);
    expect(await dropped(metrics)).toEqual({ 'health/shutdown': 4 });
  });
});
