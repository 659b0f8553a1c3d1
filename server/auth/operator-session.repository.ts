import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { hashToken } from '../common/secrets.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { Operator } from './operator-token.repository.ts';

/**
 * The dashboard's sessions. The cookie carries a random secret; the row keeps its hash and the
 * token it was opened with, so a session ends when it expires or when its token is revoked or
 * expires, whichever comes first.
 */
@Injectable()
export class OperatorSessionRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  /** Opens a session for a token; returns the cookie's value. Sessions that have ended are dropped. */
  async create(tokenId: string, expiresAt: number, now: number): Promise<string> {
    const secret = randomBytes(32).toString('base64url');
    await this.db.deleteFrom('operator_sessions').where('expires_at', '<=', now).execute();
    await this.db
      .insertInto('operator_sessions')
      .values({ id_hash: hashToken(secret), token_id: tokenId, created_at: now, expires_at: expiresAt })
      .execute();
    return secret;
  }

  /** The operator whose session this is, while both the session and its token are active. */
  async findOperator(secret: string, now: number): Promise<Operator | null> {
    const row = await this.db
      .selectFrom('operator_sessions')
      .innerJoin('operator_tokens', 'operator_tokens.id', 'operator_sessions.token_id')
      .select([
        'operator_tokens.id',
        'operator_tokens.name',
        'operator_tokens.role',
        'operator_tokens.expires_at',
      ])
      .where('operator_sessions.id_hash', '=', hashToken(secret))
      .where('operator_sessions.expires_at', '>', now)
      .where('operator_tokens.revoked_at', 'is', null)
      .where((eb) =>
        eb.or([eb('operator_tokens.expires_at', 'is', null), eb('operator_tokens.expires_at', '>', now)]),
      )
      .executeTakeFirst();
    return row ? { tokenId: row.id, name: row.name, role: row.role, expiresAt: row.expires_at } : null;
  }

  async delete(secret: string): Promise<void> {
    await this.db.deleteFrom('operator_sessions').where('id_hash', '=', hashToken(secret)).execute();
  }
}
