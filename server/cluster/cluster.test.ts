/**
 * The replica primitives on both databases: a lease one holder at a time (taken over once it
 * expires), the registry's view of who is alive, and, on PostgreSQL, a mutex that two connections
 * standing for two replicas cannot both be inside.
 */
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../test/support/databases.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { clusterMutex } from './cluster-mutex.ts';
import { Lease } from './lease.ts';
import { REPLICA_GONE_AFTER_MS, ReplicaRegistry } from './replica-registry.ts';

describe.each(databaseBackends)('replicas on $name', (backend) => {
  let db: Database;
  let url: string;
  let drop: () => Promise<void>;
  let now = 1_000_000;
  const clock = { now: () => now };

  beforeEach(async () => {
    ({ url, drop } = await backend.create());
    db = openDatabase(url);
    await migrateToLatest(db);
  });
  afterEach(async () => {
    await db.destroy();
    await drop();
  });

  it('gives a lease to one holder, renews it for that one, and to another only once it expired', async () => {
    const first = new Lease(db, clock, 'ticker', 'a', 5_000);
    const second = new Lease(db, clock, 'ticker', 'b', 5_000);
    expect(await first.hold()).toBe(true);
    expect(await second.hold()).toBe(false);
    now += 4_000;
    expect(await first.hold()).toBe(true);
    now += 4_000;
    expect(await second.hold()).toBe(false);
    now += 1_001;
    expect(await second.hold()).toBe(true);
    expect(await first.hold()).toBe(false);
    await second.release();
    expect(await first.hold()).toBe(true);
  });

  it('lets exactly one of many simultaneous takers win a free lease', async () => {
    const takers = Array.from({ length: 8 }, (_, i) => new Lease(db, clock, 'race', `r${i}`, 5_000));
    const won = await Promise.all(takers.map((lease) => lease.hold()));
    expect(won.filter(Boolean)).toHaveLength(1);
  });

  it('sees the other replicas alive until they stop beating', async () => {
    const logger = pino({ level: 'silent' });
    const one = new ReplicaRegistry(db, clock, logger);
    const two = new ReplicaRegistry(db, clock, logger);
    expect(await one.start({ httpUrl: 'http://a', broker: 'embedded' })).toEqual([]);
    now += 1_000;
    const seenByTwo = await two.start({ httpUrl: 'http://b', broker: 'embedded' });
    expect(seenByTwo.map((replica) => replica.id)).toEqual([one.id]);
    expect(await two.clusterSince()).toBe(now - 1_000);
    expect(await two.isAlive(one.id)).toBe(true);
    now += REPLICA_GONE_AFTER_MS + 1;
    expect(await two.isAlive(one.id)).toBe(false);
    expect(await two.othersAlive()).toEqual([]);
    await one.stop();
    await two.stop();
  });

  it('takes a replica on this host whose process has ended for gone at once, fresh as its row is', async () => {
    const ended = spawnSync(process.execPath, ['-e', '0']).pid;
    await db
      .insertInto('server_replicas')
      .values({
        id: 'killed-a-moment-ago',
        http_url: 'http://127.0.0.1:1',
        broker: 'embedded',
        host: hostname(),
        pid: ended,
        started_at: now,
        seen_at: now,
      })
      .execute();
    const registry = new ReplicaRegistry(db, clock, pino({ level: 'silent' }));
    expect(await registry.start({ httpUrl: 'http://b', broker: 'embedded' })).toEqual([]);
    expect(await registry.isAlive('killed-a-moment-ago')).toBe(false);
    await registry.stop();
  });

  it('runs exclusive work one at a time across connections', async () => {
    const mutexes = [clusterMutex(db, url, 'engine'), clusterMutex(db, url, 'engine')];
    let inside = 0;
    let most = 0;
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        mutexes[i % 2]!.runExclusive(async () => {
          inside++;
          most = Math.max(most, inside);
          await new Promise((resolve) => setImmediate(resolve));
          await db.selectFrom('server_leases').selectAll().execute();
          inside--;
        }),
      ),
    );
    // SQLite has one server process, whose engine queue serialises its work; the mutex is a pass-through.
    expect(most).toBe(backend.name === 'postgresql' ? 1 : 6);
  });
});
