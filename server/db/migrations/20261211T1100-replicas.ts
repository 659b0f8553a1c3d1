import type { Kysely } from 'kysely';

/**
 * Several server processes on one PostgreSQL database: each replica says it is alive in
 * `server_replicas`; work only one of them may do at a time (ticking rollouts) is held by a lease
 * in `server_leases`; a desired state is marked published once the broker took it, so a replica
 * taking over publishes only what another left unpublished; a build names the replica running it,
 * so a build on a replica that died is queued again.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('server_replicas')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('http_url', 'text', (c) => c.notNull())
    .addColumn('broker', 'text', (c) => c.notNull())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('pid', 'integer', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('seen_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('server_leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('holder', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.alterTable('device_desired').addColumn('published_at', 'bigint').execute();
  // What is stored today was published by the one server there was (it republishes on start).
  await (db as Kysely<{ device_desired: { published_at: number | null; updated_at: number } }>)
    .updateTable('device_desired')
    .set((eb) => ({ published_at: eb.ref('updated_at') }))
    .execute();
  await db.schema.alterTable('build_jobs').addColumn('claimed_by', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('build_jobs').dropColumn('claimed_by').execute();
  await db.schema.alterTable('device_desired').dropColumn('published_at').execute();
  await db.schema.dropTable('server_leases').execute();
  await db.schema.dropTable('server_replicas').execute();
}
