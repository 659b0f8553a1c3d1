import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../../test/support/databases.ts';
import { type Database, MIGRATIONS, openDatabase } from '../database.ts';

const THIS = '20261224T1700-artifact-chunk-indexes';
const BEFORE = Object.keys(MIGRATIONS)[Object.keys(MIGRATIONS).indexOf(THIS) - 1] as string;

const artifact = (id: string) => ({
  id,
  name: 'app',
  version: id === 'art-1' ? '1.0.0' : '1.1.0',
  kind: 'app-bundle' as const,
  boards: '["rpi-4b"]',
  sha256: 'a'.repeat(64),
  size: 1 << 20,
  created_at: 1,
  manifest: '{}',
  signature: 'sig',
});

const index = (artifactId: string, indexSha256: string) => ({
  artifact_id: artifactId,
  index_sha256: indexSha256,
  index_size: 66 + 36 * 64,
  signature: 'c2ln',
  chunk_count: 64,
  new_chunk_count: 3,
  new_chunk_bytes: 50_000,
  created_at: 2,
});

describe.each(databaseBackends)('the artifact chunk indexes migration on $name', (backend) => {
  let db: Database | null = null;
  let drop: (() => Promise<void>) | null = null;

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('keeps one index per existing artifact, finds them by sha256, and migrates down and up', async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    await db
      .insertInto('artifacts')
      .values([artifact('art-1'), artifact('art-2')])
      .execute();

    await db
      .insertInto('artifact_chunk_indexes')
      .values(index('art-1', 'b'.repeat(64)))
      .execute();
    // Two artifacts with the same content have the same index.
    await db
      .insertInto('artifact_chunk_indexes')
      .values(index('art-2', 'b'.repeat(64)))
      .execute();
    await expect(
      db
        .insertInto('artifact_chunk_indexes')
        .values(index('art-1', 'c'.repeat(64)))
        .execute(),
    ).rejects.toThrow();
    await expect(
      db
        .insertInto('artifact_chunk_indexes')
        .values(index('art-missing', 'c'.repeat(64)))
        .execute(),
    ).rejects.toThrow();
    expect(
      await db
        .selectFrom('artifact_chunk_indexes')
        .select(['artifact_id', 'new_chunk_bytes'])
        .where('index_sha256', '=', 'b'.repeat(64))
        .orderBy('artifact_id')
        .execute(),
    ).toEqual([
      { artifact_id: 'art-1', new_chunk_bytes: 50_000 },
      { artifact_id: 'art-2', new_chunk_bytes: 50_000 },
    ]);

    expect((await migrator.migrateTo(BEFORE)).error).toBeUndefined();
    await expect(db.selectFrom('artifact_chunk_indexes').selectAll().execute()).rejects.toThrow();
    expect(await db.selectFrom('artifacts').select('id').orderBy('id').execute()).toEqual([
      { id: 'art-1' },
      { id: 'art-2' },
    ]);
    expect((await migrator.migrateTo(THIS)).error).toBeUndefined();
    expect(await db.selectFrom('artifact_chunk_indexes').selectAll().execute()).toEqual([]);
  });
});
