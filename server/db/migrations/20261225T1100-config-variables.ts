import type { Kysely } from 'kysely';

/**
 * Configuration variables (issue 18): one row per (scope, target, name), where scope is `fleet`
 * (target ''), `tag` (target the tag) or `device` (target the device id). A device's effective set
 * is resolved from these when its desired state is written; secret values are never answered.
 * Device rows are not tied to `devices` by a foreign key: a deleted device's rows go with it in
 * the service, and a variable may be set for a device before it is registered elsewhere.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('config_variables')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('target', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('secret', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('config_variables_pk', ['scope', 'target', 'name'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('config_variables').execute();
}
