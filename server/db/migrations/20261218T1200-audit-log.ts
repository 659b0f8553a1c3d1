import { type ColumnDefinitionBuilder, type Kysely, PostgresAdapter, sql } from 'kysely';

/** A migration keeps its own helpers: changing live code must not change what it did. */
function isPostgres(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

const APPEND_ONLY = 'the audit log is append-only: entries are never changed or deleted';

/**
 * The audit log: one row per operator action (who, when, what, on what, and how it ended). Rows
 * are only ever added. The server has no code that changes or deletes one, and the database
 * refuses it too (triggers), so neither a bug nor someone with the server's database credentials
 * can quietly rewrite history through an UPDATE or DELETE.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const postgres = isPostgres(db);
  const serialId = (column: ColumnDefinitionBuilder) =>
    postgres ? column.primaryKey().generatedByDefaultAsIdentity() : column.primaryKey().autoIncrement();
  await db.schema
    .createTable('audit_log')
    .addColumn('id', postgres ? 'bigint' : 'integer', serialId)
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('actor', 'text', (c) => c.notNull())
    .addColumn('actor_token_id', 'text', (c) => c.notNull())
    .addColumn('via', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('target', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('detail', 'text')
    .addColumn('reason', 'text')
    .execute();
  // Read newest first, from a time on, and by actor (name or token id).
  await db.schema.createIndex('audit_log_by_time').on('audit_log').columns(['at', 'id']).execute();
  await db.schema.createIndex('audit_log_by_actor').on('audit_log').columns(['actor', 'at']).execute();
  await db.schema
    .createIndex('audit_log_by_actor_token')
    .on('audit_log')
    .columns(['actor_token_id', 'at'])
    .execute();

  if (postgres) {
    await sql
      .raw(
        `create function audit_log_append_only() returns trigger language plpgsql as $$
         begin raise exception '${APPEND_ONLY}'; end $$`,
      )
      .execute(db);
    await sql`create trigger audit_log_no_change before update or delete on audit_log
      for each row execute function audit_log_append_only()`.execute(db);
    // TRUNCATE fires no row trigger.
    await sql`create trigger audit_log_no_truncate before truncate on audit_log
      for each statement execute function audit_log_append_only()`.execute(db);
  } else {
    for (const event of ['update', 'delete']) {
      await sql
        .raw(
          `create trigger audit_log_no_${event} before ${event} on audit_log
           begin select raise(abort, '${APPEND_ONLY}'); end`,
        )
        .execute(db);
    }
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  // The table's triggers go with it.
  await db.schema.dropTable('audit_log').execute();
  if (isPostgres(db)) await sql`drop function audit_log_append_only()`.execute(db);
}
