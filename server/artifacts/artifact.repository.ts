import { Inject, Injectable } from '@nestjs/common';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

export type ArtifactRecord = Artifact;

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

  /** Every artifact, without its manifest and signature: what the TUF targets list names. */
  async catalogue(): Promise<ArtifactEntry[]> {
    const rows = await this.db
      .selectFrom('artifacts')
      .select(['name', 'version', 'kind', 'boards', 'sha256', 'size'])
      .orderBy('name')
      .orderBy('version')
      .execute();
    return rows.map((row) => ({ ...row, boards: JSON.parse(row.boards) as string[] }));
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('artifacts')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}

export type ArtifactEntry = Pick<ArtifactRecord, 'name' | 'version' | 'kind' | 'boards' | 'sha256' | 'size'>;

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
