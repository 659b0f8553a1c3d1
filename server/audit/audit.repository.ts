import { Inject, Injectable } from '@nestjs/common';
import type { Selectable } from 'kysely';
import type { AuditEntry } from '../../protocol/api/audit.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { AuditLogTable } from '../db/schema.ts';

export type NewAuditEntry = Omit<AuditEntry, 'id'>;

export interface AuditFilter {
  /** Entries at or after this time (ms since the epoch). */
  since?: number;
  /** Entries by this operator token: its name or its id. */
  actor?: string;
  limit: number;
}

/**
 * The audit log's table. Append and read only: there is deliberately no method that changes or
 * deletes an entry, and the table's triggers refuse it from anywhere else.
 */
@Injectable()
export class AuditRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async append(entry: NewAuditEntry): Promise<void> {
    await this.db
      .insertInto('audit_log')
      .values({
        at: entry.at,
        actor: entry.actor,
        actor_token_id: entry.actorTokenId,
        via: entry.via,
        action: entry.action,
        target: entry.target,
        outcome: entry.outcome,
        detail: entry.detail,
        reason: entry.reason,
      })
      .execute();
  }

  /** Newest first; entries written in the same millisecond in the order they were written. */
  async list(filter: AuditFilter): Promise<AuditEntry[]> {
    let query = this.db.selectFrom('audit_log').selectAll();
    if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
    const actor = filter.actor;
    if (actor !== undefined)
      query = query.where((eb) => eb.or([eb('actor', '=', actor), eb('actor_token_id', '=', actor)]));
    const rows = await query.orderBy('at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map(toEntry);
  }
}

function toEntry(row: Selectable<AuditLogTable>): AuditEntry {
  return {
    id: row.id,
    at: row.at,
    actor: row.actor,
    actorTokenId: row.actor_token_id,
    via: row.via,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    detail: row.detail,
    reason: row.reason,
  };
}
