import { Inject, Injectable } from '@nestjs/common';
import type { OperatorRole } from '../../protocol/api/session.ts';
import { generateId, generateSecret, hashToken } from '../common/secrets.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

export interface Operator {
  tokenId: string;
  name: string;
  role: OperatorRole;
}

@Injectable()
export class OperatorTokenRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(name: string, role: OperatorRole, now: number): Promise<{ id: string; token: string }> {
    const id = generateId('tok');
    const token = generateSecret('bft');
    await this.db
      .insertInto('operator_tokens')
      .values({ id, name, role, token_hash: hashToken(token), created_at: now })
      .execute();
    return { id, token };
  }

  async findByToken(token: string): Promise<Operator | null> {
    const row = await this.db
      .selectFrom('operator_tokens')
      .select(['id', 'name', 'role'])
      .where('token_hash', '=', hashToken(token))
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return row ? { tokenId: row.id, name: row.name, role: row.role } : null;
  }

  async countActive(): Promise<number> {
    const row = await this.db
      .selectFrom('operator_tokens')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('revoked_at', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
