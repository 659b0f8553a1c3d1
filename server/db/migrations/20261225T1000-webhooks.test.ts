import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const THIS = '20261225T1000-webhooks';
const BEFORE = Object.keys(MIGRATIONS)[Object.keys(MIGRATIONS).indexOf(THIS) - 1] as string;

const delivery = (id: string, eventKey: string) => ({
  id,
  webhook_id: 'wh-1',
  event_key: eventKey,
  event_id: `evt-${eventKey}`,
  event_type: 'device.offline',
  body: '{}',
  created_at: 1,
  status: 'pending' as const,
  attempts: 0,
  next_attempt_at: 1,
  claimed_until: null,
  finished_at: null,
});

describe.each(databaseBackends)('the webhooks migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('queues an event once per webhook, refuses a delivery to no webhook, and migrates down and up', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    await db
      .insertInto('webhooks')
      .values({
        id: 'wh-1',
        url: 'https://x/',
        events: '[]',
        secret: 's',
        created_at: 1,
        created_by: 'admin',
      })
      .execute();
    await db.insertInto('webhook_deliveries').values(delivery('d-1', 'k')).execute();
    await expect(
      db.insertInto('webhook_deliveries').values(delivery('d-2', 'k')).execute(),
    ).rejects.toThrow();
    await expect(
      db
        .insertInto('webhook_deliveries')
        .values({ ...delivery('d-3', 'other'), webhook_id: 'wh-missing' })
        .execute(),
    ).rejects.toThrow();

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('webhooks').selectAll().execute()).rejects.toThrow();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('webhook_deliveries').selectAll().execute()).toEqual([]);
  });
});
