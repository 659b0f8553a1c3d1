import { Inject, Injectable } from '@nestjs/common';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

/** An artifact as stored; the API adds what its chunk index says. */
export type ArtifactRecord = Omit<Artifact, 'chunks'>;

@Injectable()
export class ArtifactRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(record: ArtifactRecord): Promise<void> {
    await this.db
      .insertInto('artifacts')
      .values({
        id: record.id,
        name: record.name,
        version: record.version,
        kind: record.kind,
        boards: JSON.stringify(record.boards),
        sha256: record.sha256,
        size: record.size,
        created_at: record.createdAt,
        manifest: record.manifest,
        signature: record.signature,
      })
      .execute();
  }

  async findByNameVersion(name: string, version: string): Promise<ArtifactRecord | null> {
    const row = await this.db
      .selectFrom('artifacts')
      .selectAll()
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async get(id: string): Promise<ArtifactRecord | null> {
    const row = await this.db.selectFrom('artifacts').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toRecord(row) : null;
  }

  async list(filter: {
    name?: string;
    kind?: string;
    limit: number;
    offset: number;
  }): Promise<ArtifactRecord[]> {
    let query = this.db.selectFrom('artifacts').selectAll();
    if (filter.name) query = query.where('name', '=', filter.name);
    if (filter.kind) query = query.where('kind', '=', filter.kind as ArtifactRecord['kind']);
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(filter.limit)
      .offset(filter.offset)
      .execute();
    return rows.map(toRecord);
  }

  /**
   * Every artifact, without its manifest and signature, and its chunk index if it has one: what
   * the TUF targets list names.
   */
  async catalogue(): Promise<ArtifactEntry[]> {
    const rows = await this.db
      .selectFrom('artifacts')
      .leftJoin('artifact_chunk_indexes', 'artifact_chunk_indexes.artifact_id', 'artifacts.id')
      .select([
        'artifacts.name',
        'artifacts.version',
        'artifacts.kind',
        'artifacts.boards',
        'artifacts.sha256',
        'artifacts.size',
        'artifact_chunk_indexes.index_sha256',
        'artifact_chunk_indexes.index_size',
      ])
      .orderBy('artifacts.name')
      .orderBy('artifacts.version')
      .execute();
    return rows.map(({ index_sha256, index_size, ...row }) => ({
      ...row,
      boards: JSON.parse(row.boards) as string[],
      chunkIndex: index_sha256 === null ? null : { sha256: index_sha256, size: Number(index_size) },
    }));
  }

  /** How many targets the catalogue makes: each artifact, and each chunk index. */
  async targetCount(): Promise<number> {
    const count = async (table: 'artifacts' | 'artifact_chunk_indexes') =>
      Number(
        (
          await this.db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll<number>().as('count'))
            .executeTakeFirstOrThrow()
        ).count,
      );
    return (await count('artifacts')) + (await count('artifact_chunk_indexes'));
  }
}

export type ArtifactEntry = Pick<
  ArtifactRecord,
  'name' | 'version' | 'kind' | 'boards' | 'sha256' | 'size'
> & {
  chunkIndex: { sha256: string; size: number } | null;
};

function toRecord(row: {
  id: string;
  name: string;
  version: string;
  kind: ArtifactRecord['kind'];
  boards: string;
  sha256: string;
  size: number;
  created_at: number;
  manifest: string;
  signature: string;
}): ArtifactRecord {
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    kind: row.kind,
    boards: JSON.parse(row.boards) as string[],
    sha256: row.sha256,
    size: row.size,
    createdAt: row.created_at,
    manifest: row.manifest,
    signature: row.signature,
  };
}
