import type { Kysely } from 'kysely';

/** The latest console capture a device uploaded for each artifact version it ran as a VM. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('device_consoles')
    .addColumn('device_id', 'text', (c) => c.notNull().references('devices.id').onDelete('cascade'))
    .addColumn('artifact', 'text', (c) => c.notNull())
    .addColumn('version', 'text', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('size', 'integer', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('device_consoles_pk', ['device_id', 'artifact', 'version'])
    .execute();
  await db.schema
    .createIndex('device_consoles_by_device_updated')
    .on('device_consoles')
    .columns(['device_id', 'updated_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('device_consoles').execute();
}
