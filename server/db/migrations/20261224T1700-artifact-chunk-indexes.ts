import type { Kysely } from 'kysely';

/**
 * Chunk indexes for delta updates (issue 17): one row per chunked artifact. The index and the
 * chunks are blobs of the artifact store, keyed by their sha256; the row names the index, its
 * signature by the fleet key, and how many chunks and bytes this artifact added to the store.
 * Indexes are looked up by their sha256 too: a device names the one it holds as a delta's base.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('artifact_chunk_indexes')
    .addColumn('artifact_id', 'text', (c) => c.primaryKey().references('artifacts.id').onDelete('cascade'))
    .addColumn('index_sha256', 'text', (c) => c.notNull())
    .addColumn('index_size', 'bigint', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('chunk_count', 'integer', (c) => c.notNull())
    .addColumn('new_chunk_count', 'integer', (c) => c.notNull())
    .addColumn('new_chunk_bytes', 'bigint', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('artifact_chunk_indexes_by_sha256')
    .on('artifact_chunk_indexes')
    .column('index_sha256')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('artifact_chunk_indexes').execute();
}
