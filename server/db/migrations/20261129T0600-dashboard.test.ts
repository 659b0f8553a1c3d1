import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { Inventory } from '../../../protocol/schemas.ts';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const inventory: Inventory = {
  board: 'rpi-4b',
  os: 'Debian 12',
  kernel: '6.1',
  architecture: 'arm64',
  agentVersion: '0.1.0',
  hostname: 'pi',
  slots: [{ name: 'app', artifact: 'app', version: '2.0.1', active: true }],
  attachedBoards: [{ port: '/dev/ttyACM0', board: 'uno', firmware: null, firmwareVersion: null }],
  at: 1,
};

describe.each(databaseBackends)('the dashboard migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('fills the new columns from inventories already stored, and migrates down again', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo('20261129T0500-builds')).error).toBeUndefined();
    await db
      .insertInto('devices')
      .values([
        {
          id: 'dev-reported',
          name: 'reported',
          board: null,
          created_at: 1,
          online: 0,
          inventory: JSON.stringify(inventory),
        },
        { id: 'dev-silent', name: 'silent', board: 'rpi-3b', created_at: 2, online: 0 },
      ] as never)
      .execute();

    expect((await migrator.migrateTo('20261129T0600-dashboard')).error).toBeUndefined();
    const rows = await db
      .selectFrom('devices')
      .select(['id', 'running_version', 'reported_board', 'attached_board_problem', 'health_problem'])
      .orderBy('id')
      .execute();
    expect(rows).toEqual([
      {
        id: 'dev-reported',
        running_version: '2.0.1',
        reported_board: 'rpi-4b',
        attached_board_problem: 'uno on /dev/ttyACM0 does not answer Firmata',
        health_problem: null,
      },
      {
        id: 'dev-silent',
        running_version: null,
        reported_board: null,
        attached_board_problem: null,
        health_problem: null,
      },
    ]);

    expect((await migrator.migrateTo('20261129T0500-builds')).error).toBeUndefined();
    expect(
      await db.selectFrom('devices').selectAll().where('id', '=', 'dev-silent').executeTakeFirst(),
    ).not.toHaveProperty('running_version');
  });
});
