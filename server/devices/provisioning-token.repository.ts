import { Inject, Injectable } from '@nestjs/common';
import { generateId, generateSecret, hashToken } from '../common/secrets.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

@Injectable()
export class ProvisioningTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(name: string, expiresAt: number | null, now: number) {
    const id = generateId('prov');
    const token = generateSecret('bfp');
    await this.db
      .insertInto('provisioning_tokens')
      .values({ id, name, token_hash: hashToken(token), created_at: now, expires_at: expiresAt, uses: 0 })
      .execute();
    return { id, token, expiresAt };
  }

  /** Counts one use of a valid token; false when it is unknown, revoked or expired. */
  async use(token: string, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('provisioning_tokens')
      .set((eb) => ({ uses: eb('uses', '+', 1) }))
      .where('token_hash', '=', hashToken(token))
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}
