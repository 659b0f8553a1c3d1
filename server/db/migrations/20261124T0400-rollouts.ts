import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('rollouts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('rollout_waves')
    .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.id').onDelete('cascade'))
    .addColumn('wave_index', 'integer', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('config', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint')
    .addColumn('finished_at', 'bigint')
    .addPrimaryKeyConstraint('rollout_waves_pk', ['rollout_id', 'wave_index'])
    .execute();
  await db.schema
    .createTable('rollout_devices')
    .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.id').onDelete('cascade'))
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('wave_index', 'integer', (c) => c.notNull())
    .addColumn('deployment_id', 'text', (c) => c.notNull().unique())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('artifact_id', 'text')
    .addColumn('previous_deployment', 'text')
    .addColumn('progress', 'integer')
    .addColumn('reason', 'text')
    .addColumn('notified_at', 'bigint')
    .addColumn('soak_until', 'bigint')
    .addColumn('state_changed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('rollout_devices_pk', ['rollout_id', 'device_id'])
    .execute();
  await db.schema
    .createIndex('rollout_devices_by_state')
    .on('rollout_devices')
    .columns(['rollout_id', 'wave_index', 'state'])
    .execute();
  // What the server wants each device to run; republished (retained) on start so a restarted
  // embedded broker, which keeps retained messages only in memory, serves it again.
  await db.schema
    .createTable('device_desired')
    .addColumn('device_id', 'text', (c) => c.primaryKey())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .execute();
  // Operator-visible rollout history (wave tripped, paused by…, rolled back): data, not logs.
  await db.schema
    .createTable('rollout_log')
    .addColumn('rollout_id', 'text', (c) => c.notNull().references('rollouts.id').onDelete('cascade'))
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('rollout_log_pk', ['rollout_id', 'seq'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['rollout_log', 'device_desired', 'rollout_devices', 'rollout_waves', 'rollouts']) {
    await db.schema.dropTable(table).execute();
  }
}
