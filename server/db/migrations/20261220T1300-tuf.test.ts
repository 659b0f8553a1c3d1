import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const BEFORE = '20261218T1200-audit-log';
const THIS = '20261220T1300-tuf';

describe.each(databaseBackends)('the TUF migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('keeps one document per role and version and one key per role and generation, and migrates down and up', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();

    const document = {
      role: 'timestamp' as const,
      version: 1,
      document: '{}',
      signed_at: 1,
      expires_at: 2,
      key_id: 'k1',
      target_count: null,
    };
    await db.insertInto('tuf_metadata').values(document).execute();
    await expect(
      db
        .insertInto('tuf_metadata')
        .values({ ...document, document: '{"other":1}' })
        .execute(),
    ).rejects.toThrow();
    await db
      .insertInto('tuf_metadata')
      .values({ ...document, role: 'snapshot' })
      .execute();

    const key = {
      key_id: 'k1',
      role: 'targets' as const,
      generation: 1,
      public_key: 'ab',
      private_key: 'pem',
      created_at: 1,
    };
    await db.insertInto('tuf_online_keys').values(key).execute();
    await expect(
      db
        .insertInto('tuf_online_keys')
        .values({ ...key, key_id: 'k2' })
        .execute(),
    ).rejects.toThrow();

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('tuf_metadata').selectAll().execute()).rejects.toThrow();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('tuf_metadata').selectAll().execute()).toEqual([]);
    expect(await db.selectFrom('tuf_online_keys').selectAll().execute()).toEqual([]);
    expect(await db.selectFrom('tuf_rollback_orders').selectAll().execute()).toEqual([]);
  });
});
