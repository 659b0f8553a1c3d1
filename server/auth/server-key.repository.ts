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

  /**
   * The stored value of `name`, or `create()`'s, stored now: a replica racing this one may store
   * its own first, and then both use that one.
   */
  async loadOrStore(name: 'fleet-ca', create: () => Promise<string>, now: number): Promise<string> {
    const stored = await this.find(name);
    if (stored !== null) return stored;
    await this.db
      .insertInto('server_keys')
      .values({ name, key: await create(), created_at: now })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    return (await this.find(name)) as string;
  }

  private async find(name: string): Promise<string | null> {
    const row = await this.db
      .selectFrom('server_keys')
      .select('key')
      .where('name', '=', name)
      .executeTakeFirst();
    return row?.key ?? null;
  }
}
