import { Inject, Injectable } from '@nestjs/common';
import type { OperatorRole, TokenInfo } from '../../protocol/api/session.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { generateId, generateSecret, hashToken } from '../common/secrets.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { OperatorTokenTable } from '../db/schema.ts';

export interface Operator {
  tokenId: string;
  name: string;
  role: OperatorRole;
  /** When its token expires; null when it does not. */
  expiresAt: number | null;
}

/** Not revoked and not expired at `now`. */
const isActive = (row: Pick<OperatorTokenTable, 'revoked_at' | 'expires_at'>, now: number) =>
  row.revoked_at === null && (row.expires_at === null || row.expires_at > now);

@Injectable()
export class OperatorTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(
    name: string,
    role: OperatorRole,
    expiresAt: number | null,
    now: number,
  ): Promise<{ id: string; token: string; expiresAt: number | null }> {
    const id = generateId('tok');
    const token = generateSecret('bft');
    await this.db
      .insertInto('operator_tokens')
      .values({ id, name, role, token_hash: hashToken(token), created_at: now, expires_at: expiresAt })
      .execute();
    return { id, token, expiresAt };
  }

  /** The operator behind a token that is neither revoked nor expired at `now`. */
  async findByToken(token: string, now: number): Promise<Operator | null> {
    const row = await this.db
      .selectFrom('operator_tokens')
      .select(['id', 'name', 'role', 'expires_at', 'revoked_at'])
      .where('token_hash', '=', hashToken(token))
      .executeTakeFirst();
    return row && isActive(row, now)
      ? { tokenId: row.id, name: row.name, role: row.role, expiresAt: row.expires_at }
      : null;
  }

  /** The operator behind an active token, by its id (a dashboard session names its token so). */
  async findById(id: string, now: number): Promise<Operator | null> {
    const row = await this.db
      .selectFrom('operator_tokens')
      .select(['id', 'name', 'role', 'expires_at', 'revoked_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row && isActive(row, now)
      ? { tokenId: row.id, name: row.name, role: row.role, expiresAt: row.expires_at }
      : null;
  }

  /** Tokens neither revoked nor expired at `now`. */
  async countActive(now: number): Promise<number> {
    const row = await this.db
      .selectFrom('operator_tokens')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('revoked_at', 'is', null)
      .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  async list(now: number): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('operator_tokens').selectAll().orderBy('created_at').execute();
    return rows.map((row) => describe(row, now));
  }

  /**
   * Revokes a token; null when there is none with this id. The last active admin token stays: with
   * it gone nobody could make or revoke tokens until the server restarts and writes a new one.
   */
  async revoke(id: string, now: number): Promise<TokenInfo | null> {
    return this.db.transaction().execute(async (trx) => {
      // Locks every active admin token first, so two revocations of the last two cannot both pass.
      await trx
        .updateTable('operator_tokens')
        .set((eb) => ({ revoked_at: eb.ref('revoked_at') }))
        .where('role', '=', 'admin')
        .where('revoked_at', 'is', null)
        .execute();
      const row = await trx.selectFrom('operator_tokens').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) return null;
      if (row.revoked_at !== null) return describe(row, now);
      if (row.role === 'admin' && isActive(row, now)) {
        const admins = await trx
          .selectFrom('operator_tokens')
          .select(['revoked_at', 'expires_at'])
          .where('role', '=', 'admin')
          .where('id', '<>', id)
          .execute();
        if (!admins.some((admin) => isActive(admin, now))) {
          throw new BoardfleetError(
            'conflict',
            `${id} is the last active admin token: create another admin token before revoking it`,
          );
        }
      }
      await trx.updateTable('operator_tokens').set({ revoked_at: now }).where('id', '=', id).execute();
      return describe({ ...row, revoked_at: now }, now);
    });
  }
}

function describe(row: OperatorTokenTable, now: number): TokenInfo {
  return {
    id: row.id,
    kind: 'operator',
    name: row.name,
    role: row.role,
    state: row.revoked_at !== null ? 'revoked' : isActive(row, now) ? 'active' : 'expired',
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    uses: null,
    maxUses: null,
    board: null,
    tags: null,
  };
}
