import { type ColumnDefinitionBuilder, type Kysely, PostgresAdapter } from 'kysely';

/** A migration keeps its own helpers: changing live code must not change what it did. */
function isPostgres(db: Kysely<unknown>): boolean {
  return db.getExecutor().adapter instanceof PostgresAdapter;
}

export async function up(db: Kysely<unknown>): Promise<void> {
  const serialId = (column: ColumnDefinitionBuilder) =>
    isPostgres(db) ? column.primaryKey().generatedByDefaultAsIdentity() : column.primaryKey().autoIncrement();
  const idType = isPostgres(db) ? 'bigint' : 'integer';

  await db.schema
    .createTable('devices')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('board', 'text')
    .addColumn('secret_hash', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('online', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('presence_changed_at', 'bigint')
    .addColumn('last_seen_at', 'bigint')
    .addColumn('inventory', 'text')
    .addColumn('inventory_at', 'bigint')
    .execute();
  await db.schema
    .createTable('device_tags')
    .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id').onDelete('cascade'))
    .addColumn('tag', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('device_tags_pk', ['device_id', 'tag'])
    .execute();
  await db.schema.createIndex('device_tags_by_tag').on('device_tags').columns(['tag', 'device_id']).execute();

  await db.schema
    .createTable('operator_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
  await db.schema
    .createTable('provisioning_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .addColumn('uses', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable('health_samples')
    .addColumn('id', idType, serialId)
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .addColumn('uptime_seconds', 'double precision', (c) => c.notNull())
    .addColumn('load1', 'double precision', (c) => c.notNull())
    .addColumn('load5', 'double precision', (c) => c.notNull())
    .addColumn('load15', 'double precision', (c) => c.notNull())
    .addColumn('memory_total_bytes', 'bigint', (c) => c.notNull())
    .addColumn('memory_available_bytes', 'bigint', (c) => c.notNull())
    .addColumn('disk_total_bytes', 'bigint', (c) => c.notNull())
    .addColumn('disk_free_bytes', 'bigint', (c) => c.notNull())
    .addColumn('cpu_temperature_celsius', 'double precision')
    .addColumn('agent_rss_bytes', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('health_samples_by_device_time')
    .on('health_samples')
    .columns(['device_id', 'at'])
    .execute();
  await db.schema
    .createIndex('health_samples_by_received')
    .on('health_samples')
    .column('received_at')
    .execute();

  await db.schema
    .createTable('presence_history')
    .addColumn('id', idType, serialId)
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('presence_history_by_device_time')
    .on('presence_history')
    .columns(['device_id', 'at'])
    .execute();

  await db.schema
    .createTable('device_events')
    .addColumn('device_id', 'text', (c) => c.notNull())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('deployment_id', 'text')
    .addColumn('message', 'text')
    .addColumn('data', 'text')
    .addPrimaryKeyConstraint('device_events_pk', ['device_id', 'event_id'])
    .execute();
  await db.schema
    .createIndex('device_events_by_device_time')
    .on('device_events')
    .columns(['device_id', 'at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'device_events',
    'presence_history',
    'health_samples',
    'provisioning_tokens',
    'operator_tokens',
    'device_tags',
    'devices',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
