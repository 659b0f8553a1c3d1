import type { Kysely } from 'kysely';

/**
 * Tokens that expire and are listed and revoked by id: operator tokens get an expiry, provisioning
 * tokens a maximum number of uses and the board and tags they fix (JSON array; null fixes none).
 * The dashboard's sessions are rows, so the cookie carries an opaque id rather than the API token,
 * and a session ends with its token.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('operator_tokens').addColumn('expires_at', 'bigint').execute();
  await db.schema.alterTable('provisioning_tokens').addColumn('max_uses', 'integer').execute();
  await db.schema.alterTable('provisioning_tokens').addColumn('board', 'text').execute();
  await db.schema.alterTable('provisioning_tokens').addColumn('tags', 'text').execute();
  await db.schema
    .createTable('operator_sessions')
    // The sha256 of the cookie's value: a stolen database does not give out working sessions.
    .addColumn('id_hash', 'text', (c) => c.primaryKey())
    .addColumn('token_id', 'text', (c) => c.notNull().references('operator_tokens.id').onDelete('cascade'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('operator_sessions_by_token')
    .on('operator_sessions')
    .column('token_id')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('operator_sessions').execute();
  await db.schema.alterTable('provisioning_tokens').dropColumn('tags').execute();
  await db.schema.alterTable('provisioning_tokens').dropColumn('board').execute();
  await db.schema.alterTable('provisioning_tokens').dropColumn('max_uses').execute();
  await db.schema.alterTable('operator_tokens').dropColumn('expires_at').execute();
}
