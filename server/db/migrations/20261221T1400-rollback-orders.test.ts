import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const BEFORE = '20261220T1300-tuf';
const THIS = '20261221T1400-rollback-orders';

const deployment = (rollback: boolean) => ({
  id: 'dep-1',
  version: '1.0.0',
  sha256: 'a'.repeat(64),
  rollback,
});

describe.each(databaseBackends)('the rollback-orders migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('replaces the unsigned rollback flag in stored desired states by rollbackOrder', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    const stored = (deviceId: string, rollback: boolean | null) => ({
      device_id: deviceId,
      version: 1,
      payload: JSON.stringify({
        version: 1,
        issuedAt: 0,
        deployment: rollback === null ? null : deployment(rollback),
      }),
      deployment_version: null,
      updated_at: 0,
      published_at: 0,
    });
    await db
      .insertInto('device_desired')
      .values([stored('dev-sent', false), stored('dev-back', true), stored('dev-none', null)])
      .execute();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    const payloads = Object.fromEntries(
      (await db.selectFrom('device_desired').select(['device_id', 'payload']).execute()).map((row) => [
        row.device_id,
        JSON.parse(row.payload) as { deployment: Record<string, unknown> | null },
      ]),
    );
    expect(payloads['dev-sent']?.deployment).toEqual({
      id: 'dep-1',
      version: '1.0.0',
      sha256: 'a'.repeat(64),
      rollbackOrder: null,
    });
    expect(payloads['dev-back']?.deployment).toMatchObject({ rollbackOrder: 'unsigned-legacy-rollback' });
    expect(payloads['dev-back']?.deployment).not.toHaveProperty('rollback');
    expect(payloads['dev-none']?.deployment).toBeNull();
  });
});
