import { randomBytes } from 'node:crypto';
import type { Database } from '../db/database.ts';

export type ServerKeyName = 'device-secrets';

const KEY_BYTES = 32;

/**
 * Owns `server_keys`. A key lives in the database rather than the data directory so that replicas
 * sharing the database agree on it: the first to start inserts one, the others (and any racing
 * it) keep what is there.
 */
export class ServerKeyRepository {
  constructor(private readonly db: Database) {}

  async loadOrCreate(name: ServerKeyName, now: number): Promise<Buffer> {
    await this.db
      .insertInto('server_keys')
      .values({ name, key: randomBytes(KEY_BYTES).toString('base64url'), created_at: now })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db
      .selectFrom('server_keys')
      .select('key')
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    return Buffer.from(row.key, 'base64url');
  }
}
