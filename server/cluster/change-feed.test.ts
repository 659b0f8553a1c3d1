/**
 * The change feed on a real PostgreSQL: two feeds on one database stand for two replicas. And on
 * SQLite, where there is one server process, it sends nothing.
 */
import { once } from 'node:events';
import pg from 'pg';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { postgresBackend, sqliteBackend } from '../../test/support/databases.ts';
import { eventually } from '../../test/support/test-server.ts';
import { type Database, openDatabase } from '../db/database.ts';
import {
  CHANGE_CHANNEL,
  openChangeFeed,
  PostgresChangeFeed,
  SingleProcessChangeFeed,
} from './change-feed.ts';
import { EnvelopeReader, encodeChanges, MAX_NOTIFY_BYTES } from './change-envelope.ts';

describe('change envelopes', () => {
  it('packs changes in order into payloads under the limit, cutting one too large into parts', () => {
    let seq = 0;
    const big = { type: 'device-event', text: 'ü'.repeat(30_000) };
    const changes = [
      ...Array.from({ length: 500 }, (_, i) => ({ type: 'presence', i })),
      big,
      { type: 'after', i: 0 },
    ];
    const payloads = encodeChanges(
      'replica-a',
      () => seq++,
      changes,
      () => undefined,
    );
    expect(payloads.every((payload) => Buffer.byteLength(payload) < MAX_NOTIFY_BYTES)).toBe(true);
    const reader = new EnvelopeReader('replica-b');
    const decoded = payloads.flatMap((payload) => {
      const result = reader.read(payload);
      if (result && 'dropped' in result) throw new Error(result.dropped);
      return result ? result.changes : [];
    });
    expect(decoded).toEqual(changes);
    expect(new EnvelopeReader('replica-a').read(payloads[0]!)).toBeNull();
  });

  it('refuses a change over the size limit and drops what is not an envelope, without throwing', () => {
    const tooLarge: number[] = [];
    const payloads = encodeChanges(
      'a',
      () => 0,
      [{ blob: 'x'.repeat(2 * 1024 * 1024) }],
      (bytes) => tooLarge.push(bytes),
    );
    expect(payloads).toEqual([]);
    expect(tooLarge).toHaveLength(1);
    const reader = new EnvelopeReader('b');
    for (const junk of [
      '',
      '{',
      'null',
      '{"o":1}',
      '{"o":"a","s":1,"p":[1,2],"d":"AA=="}',
      '{"o":"a","s":1,"p":[0,1],"d":"!!"}',
    ])
      expect(reader.read(junk)).toMatchObject({ dropped: expect.any(String) });
  });
});

describe('change feed on PostgreSQL', () => {
  let url: string;
  let drop: () => Promise<void>;
  const dbs: Database[] = [];
  const feeds: PostgresChangeFeed[] = [];
  const logs: Array<{ msg: string; level: number }> = [];

  const replica = async (origin: string) => {
    const db = openDatabase(url);
    dbs.push(db);
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    const feed = new PostgresChangeFeed(url, db, origin, logger);
    feeds.push(feed);
    const heard: unknown[] = [];
    feed.on('change', (change) => heard.push(change));
    await feed.start();
    expect(feed.listening).toBe(true);
    return { feed, heard };
  };

  beforeEach(async () => {
    ({ url, drop } = await postgresBackend.create());
    logs.length = 0;
  });
  afterEach(async () => {
    for (const feed of feeds.splice(0)) await feed.stop();
    for (const db of dbs.splice(0)) await db.destroy();
    await drop();
  });

  it("delivers each replica's changes to the other, in order, and not back to itself", async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    const fromA = Array.from({ length: 2_000 }, (_, i) => ({
      type: 'presence',
      deviceId: `dev-${i}`,
      online: i % 2 === 0,
    }));
    const large = { type: 'device-event', message: 'x'.repeat(40_000) };
    for (const change of fromA) a.feed.publish(change);
    a.feed.publish(large);
    b.feed.publish({ type: 'build', id: 'build-1' });
    await eventually(
      'every change delivered',
      () => b.heard.length === fromA.length + 1 && a.heard.length === 1,
    );
    expect(b.heard).toEqual([...fromA, large]);
    expect(a.heard).toEqual([{ type: 'build', id: 'build-1' }]);
  });

  it('sends only the latest of the changes published with one key while they wait', async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    for (let read = 1; read <= 50; read++) a.feed.publish({ rolloutId: 'ro-1', read }, 'rollout:ro-1');
    a.feed.publish({ rolloutId: 'ro-2' }, 'rollout:ro-2');
    await eventually('the rollouts', () => b.heard.length >= 2);
    await new Promise((resolve) => setImmediate(resolve));
    expect(b.heard).toEqual([{ rolloutId: 'ro-1', read: 50 }, { rolloutId: 'ro-2' }]);
  });

  it('listens again after its connection was terminated, says so, and delivers again', async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    const resynced = once(b.feed, 'resync');
    const admin = new pg.Client({ connectionString: url });
    admin.on('error', () => undefined);
    await admin.connect();
    try {
      const { rowCount } = await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'boardfleet-change-feed'",
      );
      expect(rowCount).toBe(2);
    } finally {
      await admin.end();
    }
    await eventually('the listener to notice', () => !b.feed.listening, 5_000);
    await resynced;
    expect(b.feed.listening).toBe(true);
    const messages = logs.map((line) => line.msg);
    expect(messages.some((msg) => msg.includes('lost its PostgreSQL connection'))).toBe(true);
    expect(messages.some((msg) => msg.includes('listening again'))).toBe(true);

    a.feed.publish({ after: 'reconnect' });
    await eventually('a change after the reconnect', () => b.heard.length === 1);
    expect(b.heard).toEqual([{ after: 'reconnect' }]);
  });

  it('ignores notifications on its channel that are not change envelopes', async () => {
    const a = await replica('replica-a');
    const b = await replica('replica-b');
    const stranger = new pg.Client({ connectionString: url });
    stranger.on('error', () => undefined);
    await stranger.connect();
    try {
      for (const payload of ['hello', '{"o":"x","s":1,"c":"no"}', '{"o":"x","s":2,"p":[3,4],"d":""}'])
        await stranger.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, payload]);
    } finally {
      await stranger.end();
    }
    a.feed.publish({ still: 'works' });
    await eventually('the change after the junk', () => b.heard.length === 1);
    expect(b.heard).toEqual([{ still: 'works' }]);
    expect(logs.filter((line) => line.msg === 'change feed: notification dropped')).toHaveLength(3 * 2);
  });
});

describe('change feed on SQLite', () => {
  it('is the single-process feed, which sends and hears nothing', async () => {
    const { url, drop } = await sqliteBackend.create();
    const db = openDatabase(url);
    try {
      const feed = openChangeFeed(url, db, 'only', pino({ level: 'silent' }));
      expect(feed).toBeInstanceOf(SingleProcessChangeFeed);
      await feed.start();
      feed.publish({ type: 'presence' });
      await feed.stop();
    } finally {
      await db.destroy();
      await drop();
    }
  });
});
