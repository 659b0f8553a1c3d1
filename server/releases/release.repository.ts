import { Inject, Injectable } from '@nestjs/common';
import type { Release } from '../../protocol/api/releases.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

export type ReleaseRecord = Release;

@Injectable()
export class ReleaseRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(release: ReleaseRecord): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('releases')
        .values({ id: release.id, name: release.name, created_at: release.createdAt })
        .execute();
      await trx
        .insertInto('release_artifacts')
        .values(
          Object.entries(release.artifacts).map(([board, artifactId]) => ({
            release_id: release.id,
            board,
            artifact_id: artifactId,
          })),
        )
        .execute();
    });
  }

  async findByName(name: string): Promise<ReleaseRecord | null> {
    const row = await this.db.selectFrom('releases').select('id').where('name', '=', name).executeTakeFirst();
    return row ? this.get(row.id) : null;
  }

  async get(id: string): Promise<ReleaseRecord | null> {
    const [release] = await this.load([id]);
    return release ?? null;
  }

  async list(limit: number, offset: number): Promise<ReleaseRecord[]> {
    const rows = await this.db
      .selectFrom('releases')
      .select('id')
      .orderBy('created_at', 'desc')
      .orderBy('id')
      .limit(limit)
      .offset(offset)
      .execute();
    return this.load(rows.map((row) => row.id));
  }

  private async load(ids: string[]): Promise<ReleaseRecord[]> {
    if (ids.length === 0) return [];
    const releases = await this.db.selectFrom('releases').selectAll().where('id', 'in', ids).execute();
    const links = await this.db
      .selectFrom('release_artifacts')
      .selectAll()
      .where('release_id', 'in', ids)
      .orderBy('board')
      .execute();
    const byId = new Map(
      releases.map((row) => [
        row.id,
        { id: row.id, name: row.name, createdAt: row.created_at, artifacts: {} as Record<string, string> },
      ]),
    );
    for (const link of links) {
      const release = byId.get(link.release_id);
      if (release) release.artifacts[link.board] = link.artifact_id;
    }
    return ids.map((id) => byId.get(id)).filter((release): release is ReleaseRecord => release !== undefined);
  }
}
