import type { Kysely } from 'kysely';

// A migration is history: it keeps its own copy of what it needs, as it was when it was written.

/** The part of a stored desired state this migration reads. */
interface StoredDesired {
  deployment: { version: string } | null;
}

const UNFINISHED_WAVE_STATES = ['pending', 'running', 'awaiting-approval'];

type Tables = {
  device_desired: { device_id: string; payload: string; deployment_version: string | null };
  rollouts: { id: string; state: string; updated_at: number };
  rollout_waves: { rollout_id: string; state: string; finished_at: number | null };
};

/**
 * One truth after an aborted rollout: the version each device's desired state names, in a column
 * the device list reads (after a rollback it is the version the device was sent back to), and
 * the waves of rollouts aborted before waves could read "aborted", which still said "running".
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('device_desired').addColumn('deployment_version', 'text').execute();
  const typed = db as Kysely<Tables>;
  const stored = await typed.selectFrom('device_desired').select(['device_id', 'payload']).execute();
  for (const row of stored) {
    const version = (JSON.parse(row.payload) as StoredDesired).deployment?.version ?? null;
    if (version !== null)
      await typed
        .updateTable('device_desired')
        .set({ deployment_version: version })
        .where('device_id', '=', row.device_id)
        .execute();
  }
  const aborted = await typed
    .selectFrom('rollouts')
    .select(['id', 'updated_at'])
    .where('state', '=', 'aborted')
    .execute();
  for (const rollout of aborted)
    await typed
      .updateTable('rollout_waves')
      .set({ state: 'aborted', finished_at: rollout.updated_at })
      .where('rollout_id', '=', rollout.id)
      .where('state', 'in', UNFINISHED_WAVE_STATES)
      .execute();
}

/** Waves cannot know which unfinished state they were in: an aborted one reads "pending" again. */
export async function down(db: Kysely<unknown>): Promise<void> {
  await (db as Kysely<Tables>)
    .updateTable('rollout_waves')
    .set({ state: 'pending', finished_at: null })
    .where('state', '=', 'aborted')
    .execute();
  await db.schema.alterTable('device_desired').dropColumn('deployment_version').execute();
}
