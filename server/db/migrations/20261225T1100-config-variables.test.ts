import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const THIS = '20261225T1100-config-variables';
const BEFORE = Object.keys(MIGRATIONS)[Object.keys(MIGRATIONS).indexOf(THIS) - 1] as string;

const variable = (scope: 'fleet' | 'tag' | 'device', target: string, name: string, value: string) => ({
  scope,
  target,
  name,
  value,
  secret: 0,
  updated_at: 1,
  updated_by: 'admin',
});

describe.each(databaseBackends)('the config variables migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('keeps one value per scope, target and name, and migrates down and up', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    await db
      .insertInto('config_variables')
      .values([
        variable('fleet', '', 'LEVEL', 'a'),
        variable('tag', 'bench', 'LEVEL', 'b'),
        variable('device', 'dev-1', 'LEVEL', 'c'),
      ])
      .execute();
    await expect(
      db
        .insertInto('config_variables')
        .values(variable('tag', 'bench', 'LEVEL', 'again'))
        .execute(),
    ).rejects.toThrow();
    expect(
      await db.selectFrom('config_variables').select(['scope', 'value']).orderBy('value').execute(),
    ).toEqual([
      { scope: 'fleet', value: 'a' },
      { scope: 'tag', value: 'b' },
      { scope: 'device', value: 'c' },
    ]);

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('config_variables').selectAll().execute()).rejects.toThrow();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('config_variables').selectAll().execute()).toEqual([]);
  });
});
