import type { Kysely } from 'kysely';

/**
 * The fleet's TUF repository (issue 16):
 * - `tuf_online_keys`: the ed25519 keys the server signs targets, snapshot and timestamp with,
 *   numbered per role. Replicas share them; (role, generation) is unique, so two replicas making
 *   the first key, or a rotation's next one, at the same moment end up with one.
 * - `tuf_metadata`: every signed document, byte for byte as served. (role, version) is the key,
 *   so two replicas can never publish two different documents under one version: the second
 *   insert fails, and that replica reads back the one that won.
 * - `tuf_rollback_orders`: rollback orders operators issued; targets.json lists each.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tuf_online_keys')
    .addColumn('key_id', 'text', (c) => c.primaryKey())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('generation', 'integer', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('private_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('tuf_online_keys_role_generation', ['role', 'generation'])
    .execute();

  await db.schema
    .createTable('tuf_metadata')
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('document', 'text', (c) => c.notNull())
    .addColumn('signed_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    // The online key that signed it; null for a root, which operators sign offline.
    .addColumn('key_id', 'text')
    // For targets: how many targets it lists, so a read can tell cheaply whether it is behind.
    .addColumn('target_count', 'integer')
    .addPrimaryKeyConstraint('tuf_metadata_role_version', ['role', 'version'])
    .execute();

  await db.schema
    .createTable('tuf_rollback_orders')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('device_id', 'text')
    .addColumn('release_name', 'text')
    .addColumn('from_version', 'text', (c) => c.notNull())
    .addColumn('to_version', 'text', (c) => c.notNull())
    .addColumn('issued_at', 'bigint', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('tuf_rollback_orders').execute();
  await db.schema.dropTable('tuf_metadata').execute();
  await db.schema.dropTable('tuf_online_keys').execute();
}
