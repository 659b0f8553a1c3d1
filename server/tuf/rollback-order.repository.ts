import type { Selectable } from 'kysely';
import type { Database } from '../db/database.ts';
import type { TufRollbackOrderTable } from '../db/schema.ts';

/** A rollback order: one device or every device of a release, from a version to an older one. */
export interface RollbackOrderRecord {
  id: string;
  device: string | null;
  release: string | null;
  from: string;
  to: string;
  issuedAt: number;
}

/** Owns `tuf_rollback_orders`. Orders are only ever added: targets.json lists every one. */
export class RollbackOrderRepository {
  constructor(private readonly db: Database) {}

  /** Stores an order unless one with its id exists; answers the one stored under the id. */
  async insert(order: RollbackOrderRecord): Promise<RollbackOrderRecord> {
    await this.db
      .insertInto('tuf_rollback_orders')
      .values({
        id: order.id,
        device_id: order.device,
        release_name: order.release,
        from_version: order.from,
        to_version: order.to,
        issued_at: order.issuedAt,
      })
      .onConflict((conflict) => conflict.column('id').doNothing())
      .execute();
    const row = await this.db
      .selectFrom('tuf_rollback_orders')
      .selectAll()
      .where('id', '=', order.id)
      .executeTakeFirstOrThrow();
    return toRecord(row);
  }

  async list(): Promise<RollbackOrderRecord[]> {
    const rows = await this.db.selectFrom('tuf_rollback_orders').selectAll().orderBy('id').execute();
    return rows.map(toRecord);
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('tuf_rollback_orders')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}

function toRecord(row: Selectable<TufRollbackOrderTable>): RollbackOrderRecord {
  return {
    id: row.id,
    device: row.device_id,
    release: row.release_name,
    from: row.from_version,
    to: row.to_version,
    issuedAt: row.issued_at,
  };
}
