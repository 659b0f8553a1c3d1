import { Inject, Injectable } from '@nestjs/common';
import type { Inventory } from '../../protocol/schemas.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

export interface DeviceRecord {
  id: string;
  name: string;
  board: string | null;
  tags: string[];
  createdAt: number;
  revokedAt: number | null;
  online: boolean;
  presenceChangedAt: number | null;
  lastSeenAt: number | null;
  inventory: Inventory | null;
}

export interface DeviceFilter {
  tag?: string;
  board?: string;
  online?: boolean;
  includeRevoked?: boolean;
  limit: number;
  offset: number;
}

@Injectable()
export class DeviceRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(device: {
    id: string;
    name: string;
    board: string | null;
    tags: string[];
    secretHash: string;
    now: number;
  }) {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('devices')
        .values({
          id: device.id,
          name: device.name,
          board: device.board,
          secret_hash: device.secretHash,
          created_at: device.now,
          online: 0,
        })
        .execute();
      if (device.tags.length > 0) {
        await trx
          .insertInto('device_tags')
          .values(device.tags.map((tag) => ({ device_id: device.id, tag })))
          .execute();
      }
    });
  }

  async findSecretHash(id: string): Promise<string | null> {
    const row = await this.db
      .selectFrom('devices')
      .select('secret_hash')
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return row?.secret_hash ?? null;
  }

  async isActive(id: string): Promise<boolean> {
    return (await this.findSecretHash(id)) !== null;
  }

  async get(id: string): Promise<DeviceRecord | null> {
    const [device] = await this.list({ ids: [id], includeRevoked: true, limit: 1, offset: 0 });
    return device ?? null;
  }

  async list(filter: DeviceFilter & { ids?: string[] }): Promise<DeviceRecord[]> {
    let query = this.db.selectFrom('devices').selectAll('devices');
    if (filter.ids) query = query.where('devices.id', 'in', filter.ids);
    if (!filter.includeRevoked) query = query.where('devices.revoked_at', 'is', null);
    if (filter.board) query = query.where('devices.board', '=', filter.board);
    if (filter.online !== undefined) query = query.where('devices.online', '=', filter.online ? 1 : 0);
    if (filter.tag) {
      const tag = filter.tag;
      query = query.where((eb) =>
        eb.exists(
          eb
            .selectFrom('device_tags')
            .select('device_tags.device_id')
            .whereRef('device_tags.device_id', '=', 'devices.id')
            .where('device_tags.tag', '=', tag),
        ),
      );
    }
    const rows = await query
      .orderBy('devices.created_at')
      .orderBy('devices.id')
      .limit(filter.limit)
      .offset(filter.offset)
      .execute();
    if (rows.length === 0) return [];
    const tagRows = await this.db
      .selectFrom('device_tags')
      .select(['device_id', 'tag'])
      .where(
        'device_id',
        'in',
        rows.map((row) => row.id),
      )
      .orderBy('tag')
      .execute();
    const tagsByDevice = new Map<string, string[]>();
    for (const row of tagRows) {
      tagsByDevice.set(row.device_id, [...(tagsByDevice.get(row.device_id) ?? []), row.tag]);
    }
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      board: row.board,
      tags: tagsByDevice.get(row.id) ?? [],
      createdAt: row.created_at,
      revokedAt: row.revoked_at,
      online: row.online === 1,
      presenceChangedAt: row.presence_changed_at,
      lastSeenAt: row.last_seen_at,
      inventory: row.inventory ? (JSON.parse(row.inventory) as Inventory) : null,
    }));
  }

  async replaceTags(id: string, tags: string[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('device_tags').where('device_id', '=', id).execute();
      if (tags.length > 0) {
        await trx
          .insertInto('device_tags')
          .values(tags.map((tag) => ({ device_id: id, tag })))
          .execute();
      }
    });
  }

  async revoke(id: string, now: number): Promise<void> {
    await this.db
      .updateTable('devices')
      .set({ revoked_at: now, secret_hash: null, online: 0, presence_changed_at: now })
      .where('id', '=', id)
      .execute();
  }

  async countOnline(): Promise<number> {
    const row = await this.db
      .selectFrom('devices')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('online', '=', 1)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }
}
