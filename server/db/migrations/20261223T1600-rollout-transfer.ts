import type { Kysely } from 'kysely';

/**
 * How each device of a rollout got its artifact (`full` or `delta`), what it fetched and what a
 * full download would have: the rollout's status shows bytes per device and in total.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').addColumn('transfer_mode', 'text').execute();
  await db.schema.alterTable('rollout_devices').addColumn('transfer_bytes', 'bigint').execute();
  await db.schema.alterTable('rollout_devices').addColumn('artifact_bytes', 'bigint').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const column of ['artifact_bytes', 'transfer_bytes', 'transfer_mode'])
    await db.schema.alterTable('rollout_devices').dropColumn(column).execute();
}
