import type { Selectable } from 'kysely';
import type { Database } from '../db/database.ts';
import type { ArtifactChunkIndexTable } from '../db/schema.ts';

export type ChunkIndexRow = Selectable<ArtifactChunkIndexTable>;

/** An artifact of some name that has a chunk index: a candidate previous version. */
export interface IndexedVersion {
  artifactId: string;
  name: string;
  version: string;
  indexSha256: string;
}

/** The `artifact_chunk_indexes` table: one row per chunked artifact. */
export class ChunkIndexRepository {
  constructor(private readonly db: Database) {}

  /** Adds the row; a row the artifact already has (another replica chunked it meanwhile) stays. */
  async insert(row: ChunkIndexRow): Promise<void> {
    await this.db
      .insertInto('artifact_chunk_indexes')
      .values(row)
      .onConflict((conflict) => conflict.column('artifact_id').doNothing())
      .execute();
  }

  async get(artifactId: string): Promise<ChunkIndexRow | null> {
    return (
      (await this.db
        .selectFrom('artifact_chunk_indexes')
        .selectAll()
        .where('artifact_id', '=', artifactId)
        .executeTakeFirst()) ?? null
    );
  }

  async getMany(artifactIds: string[]): Promise<ChunkIndexRow[]> {
    if (artifactIds.length === 0) return [];
    return this.db
      .selectFrom('artifact_chunk_indexes')
      .selectAll()
      .where('artifact_id', 'in', artifactIds)
      .execute();
  }

  /** Whether some artifact has this index: only such a blob may be read as a delta's base. */
  async isIndex(indexSha256: string): Promise<boolean> {
    const row = await this.db
      .selectFrom('artifact_chunk_indexes')
      .select('artifact_id')
      .where('index_sha256', '=', indexSha256)
      .limit(1)
      .executeTakeFirst();
    return row !== undefined;
  }

  /** Every version of these names that has a chunk index. */
  async indexedVersions(names: string[]): Promise<IndexedVersion[]> {
    if (names.length === 0) return [];
    const rows = await this.db
      .selectFrom('artifacts')
      .innerJoin('artifact_chunk_indexes', 'artifact_chunk_indexes.artifact_id', 'artifacts.id')
      .select(['artifacts.id', 'artifacts.name', 'artifacts.version', 'artifact_chunk_indexes.index_sha256'])
      .where('artifacts.name', 'in', names)
      .execute();
    return rows.map((row) => ({
      artifactId: row.id,
      name: row.name,
      version: row.version,
      indexSha256: row.index_sha256,
    }));
  }
}
