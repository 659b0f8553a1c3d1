import { Inject, Injectable } from '@nestjs/common';
import type { TokenInfo } from '../../protocol/api/session.ts';
import { generateId, generateSecret, hashToken } from '../common/secrets.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { ProvisioningTokenTable } from '../db/schema.ts';

export interface NewProvisioningToken {
  name: string;
  expiresAt: number | null;
  maxUses: number | null;
  /** What every device it registers gets; null leaves it to the agent. */
  board: string | null;
  tags: string[] | null;
}

/** What a provisioning token fixes for the devices it registers. */
export interface ProvisioningGrant {
  id: string;
  board: string | null;
  tags: string[] | null;
}

@Injectable()
export class ProvisioningTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(input: NewProvisioningToken, now: number) {
    const id = generateId('prov');
    const token = generateSecret('bfp');
    const tags = input.tags === null ? null : [...new Set(input.tags)];
    await this.db
      .insertInto('provisioning_tokens')
      .values({
        id,
        name: input.name,
        token_hash: hashToken(token),
        created_at: now,
        expires_at: input.expiresAt,
        uses: 0,
        max_uses: input.maxUses,
        board: input.board,
        tags: tags === null ? null : JSON.stringify(tags),
      })
      .execute();
    return { id, token, expiresAt: input.expiresAt, maxUses: input.maxUses, board: input.board, tags };
  }

  /** What an accepted token fixes; null when it is unknown, revoked, expired or used up (nothing counted). */
  async find(token: string, now: number): Promise<ProvisioningGrant | null> {
    const row = await this.db
      .selectFrom('provisioning_tokens')
      .selectAll()
      .where('token_hash', '=', hashToken(token))
      .executeTakeFirst();
    return row && stateOf(row, now) === 'active' ? grantOf(row) : null;
  }

  /**
   * Counts one use of a valid token in one conditional UPDATE, so that of any number of
   * concurrent registrations exactly as many pass as it has uses left; false when it is unknown,
   * revoked, expired or used up.
   */
  async use(token: string, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('provisioning_tokens')
      .set((eb) => ({ uses: eb('uses', '+', 1) }))
      .where('token_hash', '=', hashToken(token))
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .where((eb) => eb.or([eb('max_uses', 'is', null), eb('uses', '<', eb.ref('max_uses'))]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Gives back a use counted for a registration that then failed. */
  async release(token: string): Promise<void> {
    await this.db
      .updateTable('provisioning_tokens')
      .set((eb) => ({ uses: eb('uses', '-', 1) }))
      .where('token_hash', '=', hashToken(token))
      .where('uses', '>', 0)
      .execute();
  }

  async list(now: number): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('provisioning_tokens').selectAll().orderBy('created_at').execute();
    return rows.map((row) => describe(row, now));
  }

  /** Revokes a token (again is a no-op); null when there is none with this id. */
  async revoke(id: string, now: number): Promise<TokenInfo | null> {
    await this.db
      .updateTable('provisioning_tokens')
      .set({ revoked_at: now })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .execute();
    const row = await this.db
      .selectFrom('provisioning_tokens')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? describe(row, now) : null;
  }
}

function stateOf(row: ProvisioningTokenTable, now: number): TokenInfo['state'] {
  if (row.revoked_at !== null) return 'revoked';
  if (row.expires_at !== null && row.expires_at <= now) return 'expired';
  if (row.max_uses !== null && row.uses >= row.max_uses) return 'used-up';
  return 'active';
}

function grantOf(row: ProvisioningTokenTable): ProvisioningGrant {
  return {
    id: row.id,
    board: row.board,
    tags: row.tags === null ? null : (JSON.parse(row.tags) as string[]),
  };
}

function describe(row: ProvisioningTokenTable, now: number): TokenInfo {
  const { board, tags } = grantOf(row);
  return {
    id: row.id,
    kind: 'provisioning',
    name: row.name,
    role: null,
    state: stateOf(row, now),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    uses: row.uses,
    maxUses: row.max_uses,
    board,
    tags,
  };
}
