import type { Kysely } from 'kysely';

/**
 * Remote shell sessions (issue 18): who opened one on which device, when, how it ended, the bytes
 * each way, and with BOARDFLEET_SHELL_TRANSCRIPTS=on what the shell printed (capped). A session
 * still open has no `ended_at`. Listed newest first, per device or across the fleet.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('shell_sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('actor_token_id', 'text', (c) => c.notNull())
    .addColumn('via', 'text', (c) => c.notNull())
    .addColumn('command', 'text')
    .addColumn('mode', 'text')
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('ended_at', 'bigint')
    .addColumn('end_reason', 'text')
    .addColumn('exit_code', 'integer')
    .addColumn('bytes_in', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('bytes_out', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('transcript', 'text')
    .execute();
  await db.schema
    .createIndex('shell_sessions_by_device')
    .on('shell_sessions')
    .columns(['device_id', 'started_at'])
    .execute();
  await db.schema.createIndex('shell_sessions_by_start').on('shell_sessions').column('started_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('shell_sessions').execute();
}
