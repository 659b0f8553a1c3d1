import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const BEFORE = '20261204T0900-tokens';
const THIS = '20261210T1000-rollout-truth';

describe.each(databaseBackends)('the rollout-truth migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('fills the desired version from stored desired states, aborts the unfinished waves of aborted rollouts, and migrates down', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await db
      .insertInto('device_desired')
      .values([
        {
          device_id: 'dev-sent',
          version: 2,
          payload: JSON.stringify({ deployment: { version: '1.1.0' } }),
          updated_at: 1,
        },
        { device_id: 'dev-none', version: 1, payload: JSON.stringify({ deployment: null }), updated_at: 1 },
      ] as never)
      .execute();
    await db.insertInto('releases').values({ id: 'rel', name: 'app-1.2.0', created_at: 1 }).execute();
    const rollout = (id: string, state: string) => ({
      id,
      name: id,
      release_id: 'rel',
      target: '{}',
      options: '{}',
      state,
      reason: null,
      created_at: 1,
      updated_at: 500,
    });
    await db
      .insertInto('rollouts')
      .values([rollout('ro-aborted', 'aborted'), rollout('ro-running', 'running')] as never)
      .execute();
    const wave = (rolloutId: string, index: number, state: string) => ({
      rollout_id: rolloutId,
      wave_index: index,
      name: `w${index}`,
      config: '{}',
      state,
      started_at: null,
      finished_at: state === 'succeeded' || state === 'tripped' ? 400 : null,
    });
    await db
      .insertInto('rollout_waves')
      .values([
        wave('ro-aborted', 0, 'succeeded'),
        wave('ro-aborted', 1, 'running'),
        wave('ro-aborted', 2, 'pending'),
        wave('ro-running', 0, 'running'),
      ] as never)
      .execute();

    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(
      await db
        .selectFrom('device_desired')
        .select(['device_id', 'deployment_version'])
        .orderBy('device_id')
        .execute(),
    ).toEqual([
      { device_id: 'dev-none', deployment_version: null },
      { device_id: 'dev-sent', deployment_version: '1.1.0' },
    ]);
    const waves = () =>
      db!
        .selectFrom('rollout_waves')
        .select(['rollout_id', 'wave_index', 'state', 'finished_at'])
        .orderBy('rollout_id')
        .orderBy('wave_index')
        .execute();
    expect(
      (await waves()).map((w) => [
        w.rollout_id,
        w.state,
        w.finished_at === null ? null : Number(w.finished_at),
      ]),
    ).toEqual([
      ['ro-aborted', 'succeeded', 400],
      ['ro-aborted', 'aborted', 500],
      ['ro-aborted', 'aborted', 500],
      ['ro-running', 'running', null],
    ]);

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    expect((await waves()).map((w) => w.state)).toEqual(['succeeded', 'pending', 'pending', 'running']);
    expect(
      await db
        .selectFrom('device_desired')
        .selectAll()
        .where('device_id', '=', 'dev-sent')
        .executeTakeFirst(),
    ).not.toHaveProperty('deployment_version');
  });
});
