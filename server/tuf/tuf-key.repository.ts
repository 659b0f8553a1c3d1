import type { OnlineRole, TufKey } from '../../protocol/tuf/metadata.ts';
import { generateTufKey, keyIdOf, privateKeyPem, tufKeyOf } from '../../protocol/tuf/signing.ts';
import type { Database } from '../db/database.ts';

export interface OnlineKeyRecord {
  keyId: string;
  role: OnlineRole;
  /** 1 for the role's first key; a rotation adds the next. */
  generation: number;
  key: TufKey;
  privateKeyPem: string;
  createdAt: number;
}

/**
 * Owns `tuf_online_keys`: the keys the server signs targets, snapshot and timestamp with. They
 * live in the database, not the data directory, so every replica signs with the same ones.
 */
export class TufKeyRepository {
  constructor(private readonly db: Database) {}

  /** Every key, by role and generation. */
  async list(): Promise<OnlineKeyRecord[]> {
    const rows = await this.db
      .selectFrom('tuf_online_keys')
      .selectAll()
      .orderBy('role')
      .orderBy('generation')
      .execute();
    return rows.map((row) => ({
      keyId: row.key_id,
      role: row.role,
      generation: row.generation,
      key: { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: row.public_key } },
      privateKeyPem: row.private_key,
      createdAt: row.created_at,
    }));
  }

  /**
   * Makes key `generation` of `role`, unless that generation exists already: a replica doing the
   * same at the same moment wins or loses as a whole. True when this call made it.
   */
  async addGeneration(role: OnlineRole, generation: number, now: number): Promise<boolean> {
    const privateKey = generateTufKey();
    const key = tufKeyOf(privateKey);
    const result = await this.db
      .insertInto('tuf_online_keys')
      .values({
        key_id: keyIdOf(key),
        role,
        generation,
        public_key: key.keyval.public,
        private_key: privateKeyPem(privateKey),
        created_at: now,
      })
      .onConflict((conflict) => conflict.columns(['role', 'generation']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Forgets a role's keys before `generation`: once a root names a newer one, they sign nothing. */
  async deleteBefore(role: OnlineRole, generation: number): Promise<void> {
    await this.db
      .deleteFrom('tuf_online_keys')
      .where('role', '=', role)
      .where('generation', '<', generation)
      .execute();
  }
}
