import { Inject, Injectable } from '@nestjs/common';
import type { Selectable } from 'kysely';
import type { BuildJob, BuildOutput, BuildState, EndedBuildState } from '../../protocol/api/builds.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { BuildJobTable } from '../db/schema.ts';

const toJob = (row: Selectable<BuildJobTable>): BuildJob => ({
  id: row.id,
  recipe: row.recipe,
  board: row.board,
  state: row.state as BuildState,
  step: row.step,
  progress: row.progress,
  error: row.error,
  outputs: JSON.parse(row.outputs) as BuildOutput[],
  createdAt: row.created_at,
  startedAt: row.started_at,
  finishedAt: row.finished_at,
});

@Injectable()
export class BuildJobRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async insert(job: Pick<BuildJob, 'id' | 'recipe' | 'board' | 'createdAt'>): Promise<void> {
    await this.db
      .insertInto('build_jobs')
      .values({
        id: job.id,
        recipe: job.recipe,
        board: job.board,
        state: 'queued',
        progress: 0,
        outputs: '[]',
        created_at: job.createdAt,
      })
      .execute();
  }

  async get(id: string): Promise<BuildJob | null> {
    const row = await this.db.selectFrom('build_jobs').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toJob(row) : null;
  }

  async list(limit: number, offset: number): Promise<BuildJob[]> {
    const rows = await this.db
      .selectFrom('build_jobs')
      .selectAll()
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .offset(offset)
      .execute();
    return rows.map(toJob);
  }

  /** Queued jobs, oldest first: the order they run in. */
  async queued(): Promise<BuildJob[]> {
    const rows = await this.db
      .selectFrom('build_jobs')
      .selectAll()
      .where('state', '=', 'queued')
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toJob);
  }

  /** Builds that were running when the server stopped go back to the queue (steps are cached). */
  async requeueInterrupted(): Promise<number> {
    const result = await this.db
      .updateTable('build_jobs')
      .set({ state: 'queued', step: null, progress: 0, started_at: null })
      .where('state', '=', 'running')
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async markRunning(id: string, at: number): Promise<void> {
    await this.db
      .updateTable('build_jobs')
      .set({ state: 'running', started_at: at })
      .where('id', '=', id)
      .execute();
  }

  async updateProgress(id: string, step: string, progress: number): Promise<void> {
    await this.db.updateTable('build_jobs').set({ step, progress }).where('id', '=', id).execute();
  }

  /** Ends a job unless it has ended already (a cancel racing the last step). */
  async finish(
    id: string,
    outcome: { state: EndedBuildState; error?: string; outputs?: BuildOutput[] },
    at: number,
  ): Promise<boolean> {
    const result = await this.db
      .updateTable('build_jobs')
      .set({
        state: outcome.state,
        error: outcome.error ?? null,
        ...(outcome.outputs ? { outputs: JSON.stringify(outcome.outputs) } : {}),
        ...(outcome.state === 'succeeded' ? { progress: 100 } : {}),
        finished_at: at,
      })
      .where('id', '=', id)
      .where('state', 'in', ['queued', 'running'])
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }
}
