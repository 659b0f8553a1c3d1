import { Migrator, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const BEFORE = '20261211T1100-replicas';
const THIS = '20261218T1200-audit-log';

describe.each(databaseBackends)('the audit-log migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('makes an append-only table, and migrates down and up again', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    const row = {
      at: 1,
      actor: 'admin',
      actor_token_id: 'tok-1',
      via: 'token' as const,
      action: 'device.revoke',
      target: 'dev-1',
      outcome: 'ok' as const,
      detail: null,
      reason: null,
    };
    await db.insertInto('audit_log').values(row).execute();
    await expect(sql`update audit_log set actor = 'someone else'`.execute(db)).rejects.toThrow(/append-only/);

    // Down drops the table with its triggers (and, on PostgreSQL, their function): up again starts empty.
    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('audit_log').selectAll().execute()).rejects.toThrow();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('audit_log').selectAll().execute()).toEqual([]);
    await db.insertInto('audit_log').values(row).execute();
    await expect(sql`delete from audit_log`.execute(db)).rejects.toThrow(/append-only/);
  });
});
