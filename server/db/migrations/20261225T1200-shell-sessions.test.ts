import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const THIS = '20261225T1200-shell-sessions';
const BEFORE = Object.keys(MIGRATIONS)[Object.keys(MIGRATIONS).indexOf(THIS) - 1] as string;

const session = (id: string, startedAt: number) => ({
  id,
  device_id: 'dev-1',
  actor: 'admin',
  actor_token_id: 'tok-1',
  via: 'token' as const,
  command: null,
  mode: null,
  started_at: startedAt,
  ended_at: null,
  end_reason: null,
  exit_code: null,
  bytes_in: 0,
  bytes_out: 0,
  transcript: null,
});

describe.each(databaseBackends)('the shell sessions migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('keeps sessions open and ended, refuses a repeated id, and migrates down and up', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    await db
      .insertInto('shell_sessions')
      .values([session('sh-1', 1), session('sh-2', 2)])
      .execute();
    await expect(db.insertInto('shell_sessions').values(session('sh-1', 3)).execute()).rejects.toThrow();
    const bigOutput = 5_000_000_000;
    await db
      .updateTable('shell_sessions')
      .set({ ended_at: 10, end_reason: 'exited', exit_code: 0, bytes_out: bigOutput, transcript: 'hello' })
      .where('id', '=', 'sh-1')
      .execute();
    expect(
      await db
        .selectFrom('shell_sessions')
        .select(['id', 'ended_at', 'bytes_out', 'transcript'])
        .where('device_id', '=', 'dev-1')
        .orderBy('started_at', 'desc')
        .execute(),
    ).toEqual([
      { id: 'sh-2', ended_at: null, bytes_out: 0, transcript: null },
      { id: 'sh-1', ended_at: 10, bytes_out: bigOutput, transcript: 'hello' },
    ]);

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('shell_sessions').selectAll().execute()).rejects.toThrow();
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('shell_sessions').selectAll().execute()).toEqual([]);
  });
});
