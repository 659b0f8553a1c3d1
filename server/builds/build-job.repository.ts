import { Inject, Injectable } from '@nestjs/common';
import { PostgresAdapter, type Selectable } from 'kysely';
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
  private readonly isPostgres: boolean;

  constructor(@Inject(DATABASE) private readonly db: Database) {
    this.isPostgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

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

  /**
   * Takes the oldest queued job for `replica`, or null when none is queued. One statement: on
   * PostgreSQL the row is locked and other replicas skip it (SKIP LOCKED), so each takes another
   * job at once instead of waiting; on SQLite the statement holds the database's write lock.
   */
  async claimNext(replica: string, at: number): Promise<BuildJob | null> {
    const oldest = this.db
      .selectFrom('build_jobs')
      .select('id')
      .where('state', '=', 'queued')
      .orderBy('created_at')
      .orderBy('id')
      .limit(1);
    const row = await this.db
      .updateTable('build_jobs')
      .set({ state: 'running', claimed_by: replica, started_at: at })
      .where('id', '=', this.isPostgres ? oldest.forUpdate().skipLocked() : oldest)
      .where('state', '=', 'queued')
      .returningAll()
      .executeTakeFirst();
    return row ? toJob(row) : null;
  }

  /** Running jobs and the replica running each (null: a server from before replicas). */
  async claims(): Promise<Array<{ id: string; claimedBy: string | null }>> {
    const rows = await this.db
      .selectFrom('build_jobs')
      .select(['id', 'claimed_by'])
      .where('state', '=', 'running')
      .execute();
    return rows.map((row) => ({ id: row.id, claimedBy: row.claimed_by }));
  }

  /**
   * Puts a running job back in the queue if `claimedBy` still runs it; false when it has moved on
   * (ended, or already queued again by another replica). Its finished steps are cached.
   */
  async requeue(id: string, claimedBy: string | null): Promise<boolean> {
    const result = await this.db
      .updateTable('build_jobs')
      .set({ state: 'queued', claimed_by: null, step: null, progress: 0, started_at: null })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('claimed_by', claimedBy === null ? 'is' : '=', claimedBy)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /** Saves progress while `replica` runs the job: one that lost it must not overwrite the next run's. */
  async updateProgress(id: string, replica: string, step: string, progress: number): Promise<void> {
    await this.db
      .updateTable('build_jobs')
      .set({ step, progress })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .where('claimed_by', '=', replica)
      .execute();
  }

  /**
   * Ends a job unless it has ended already (a cancel racing the last step). With `replica`, only
   * while that replica runs it: a replica the others took for dead must not end the run that
   * replaced its own.
   */
  async finish(
    id: string,
    outcome: { state: EndedBuildState; error?: string; outputs?: BuildOutput[] },
    at: number,
    replica?: string,
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
      .where((eb) =>
        replica === undefined
          ? eb('state', 'in', ['queued', 'running'])
          : eb.and([eb('state', '=', 'running'), eb('claimed_by', '=', replica)]),
      )
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }
}
