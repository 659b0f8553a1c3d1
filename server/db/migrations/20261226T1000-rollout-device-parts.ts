import type { Kysely } from 'kysely';

/**
 * Composite releases (issue 19): a device of a rollout may get several artifacts at once, e.g. a
 * gateway's app and the firmware for the board attached to it. `artifact_id` stays the device's
 * own artifact; `part_artifact_ids` (a JSON array, null for one artifact) holds the others.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').addColumn('part_artifact_ids', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rollout_devices').dropColumn('part_artifact_ids').execute();
}
