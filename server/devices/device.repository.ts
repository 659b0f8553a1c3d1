import { Inject, Injectable } from '@nestjs/common';
import { type Expression, type ExpressionBuilder, type SqlBool, sql } from 'kysely';
import type { Device } from '../../protocol/api/devices.ts';
import type { Inventory } from '../../protocol/schemas.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { DatabaseSchema } from '../db/schema.ts';

export type DeviceRecord = Device;

export interface DeviceFilter {
  tag?: string;
  /** The board the device reports, or the one it was registered with until it reports one. */
  board?: string;
  online?: boolean;
  /** The running version. */
  version?: string;
  /** A case-insensitive substring of the name or id. */
  search?: string;
  includeRevoked?: boolean;
  /** Registration order unless `name` (A→Z) or `lastSeen` (most recent first, never-seen last). */
  sort?: 'name' | 'lastSeen';
  limit: number;
  offset: number;
}

/** What a device's inventory says about it, as the devices table keeps it. */
export interface InventoryReport {
  inventory: Inventory;
  runningVersion: string | null;
  reportedBoard: string | null;
  attachedBoardProblem: string | null;
}

/** The latest heartbeat of one device in a batch: when it was heard and what looks wrong. */
export interface HeartbeatSummary {
  deviceId: string;
  receivedAt: number;
  healthProblem: string | null;
}

/** `\`, `%` and `_` match themselves in a LIKE pattern built from user input (lower-cased). */
function likeLiteral(text: string): string {
  return text.toLowerCase().replace(/[\\%_]/g, (character) => `\\${character}`);
}

const containsPattern = (text: string) => `%${likeLiteral(text)}%`;

/** The WHERE conditions of a device filter, shared by the page query and its count. */
function filterConditions(
  eb: ExpressionBuilder<DatabaseSchema, 'devices'>,
  filter: DeviceFilter & { ids?: string[] },
): Expression<SqlBool>[] {
  const conditions: Expression<SqlBool>[] = [];
  if (filter.ids) conditions.push(eb('devices.id', 'in', filter.ids));
  if (!filter.includeRevoked) conditions.push(eb('devices.revoked_at', 'is', null));
  if (filter.board)
    conditions.push(eb(eb.fn.coalesce('devices.reported_board', 'devices.board'), '=', filter.board));
  if (filter.online !== undefined) conditions.push(eb('devices.online', '=', filter.online ? 1 : 0));
  if (filter.version) conditions.push(eb('devices.running_version', '=', filter.version));
  if (filter.search) {
    const pattern = containsPattern(filter.search);
    conditions.push(
      eb.or([
        sql<SqlBool>`lower(devices.name) like ${pattern} escape '\\'`,
        sql<SqlBool>`lower(devices.id) like ${pattern} escape '\\'`,
      ]),
    );
  }
  if (filter.tag) {
    const tag = filter.tag;
    conditions.push(
      eb.exists(
        eb
          .selectFrom('device_tags')
          .select('device_tags.device_id')
          .whereRef('device_tags.device_id', '=', 'devices.id')
          .where('device_tags.tag', '=', tag),
      ),
    );
  }
  return conditions;
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

  /**
   * Replaces a device's secret hash by another form of the same secret (an older scheme upgraded
   * after a successful check). Only if it is still `previous`: a revocation in between stays.
   */
  async replaceSecretHash(id: string, previous: string, next: string): Promise<void> {
    await this.db
      .updateTable('devices')
      .set({ secret_hash: next })
      .where('id', '=', id)
      .where('secret_hash', '=', previous)
      .execute();
  }

  /** Ids of the devices that may log in (not revoked). */
  async activeIds(): Promise<string[]> {
    const rows = await this.db.selectFrom('devices').select('id').where('revoked_at', 'is', null).execute();
    return rows.map((row) => row.id);
  }

  async isActive(id: string): Promise<boolean> {
    return (await this.findSecretHash(id)) !== null;
  }

  async get(id: string): Promise<DeviceRecord | null> {
    const [device] = await this.list({ ids: [id], includeRevoked: true, limit: 1, offset: 0 });
    return device ?? null;
  }

  async list(filter: DeviceFilter & { ids?: string[] }): Promise<DeviceRecord[]> {
    // The desired state is the rollouts module's; its version is read here so every device view
    // (list, details, dashboard) shows the same one.
    let query = this.db
      .selectFrom('devices')
      .leftJoin('device_desired', 'device_desired.device_id', 'devices.id')
      .selectAll('devices')
      .select('device_desired.deployment_version as desired_version')
      .where((eb) => eb.and(filterConditions(eb, filter)));
    if (filter.sort === 'name') query = query.orderBy(sql`lower(devices.name)`);
    else if (filter.sort === 'lastSeen')
      query = query.orderBy('devices.last_seen_at', (ob) => ob.desc().nullsLast());
    else query = query.orderBy('devices.created_at');
    const rows = await query.orderBy('devices.id').limit(filter.limit).offset(filter.offset).execute();
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
      runningVersion: row.running_version,
      desiredVersion: row.desired_version,
      healthProblem: row.health_problem ?? row.attached_board_problem,
    }));
  }

  /** How many devices match the filter, ignoring its page. */
  async count(filter: DeviceFilter): Promise<number> {
    const row = await this.db
      .selectFrom('devices')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where((eb) => eb.and(filterConditions(eb, filter)))
      .executeTakeFirstOrThrow();
    return Number(row.count);
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

  async rename(id: string, name: string): Promise<void> {
    await this.db.updateTable('devices').set({ name }).where('id', '=', id).execute();
  }

  /**
   * The names of registered (not revoked) devices that are `name` or `name-N`, lower-cased: what
   * a new device's name must not repeat, and which suffixes are taken.
   */
  async namesLike(name: string): Promise<Set<string>> {
    const rows = await this.db
      .selectFrom('devices')
      .select('name')
      .where('revoked_at', 'is', null)
      .where((eb) =>
        eb.or([
          eb(sql<string>`lower(name)`, '=', name.toLowerCase()),
          sql<SqlBool>`lower(name) like ${`${likeLiteral(name)}-%`} escape '\\'`,
        ]),
      )
      .execute();
    return new Set(rows.map((row) => row.name.toLowerCase()));
  }

  /**
   * Deletes a device and what it reported (tags, health, presence, events, consoles, desired
   * state). Rollouts keep their rows: their history names the device id.
   */
  async delete(id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (const table of ['health_samples', 'presence_history', 'device_events', 'device_desired'] as const)
        await trx.deleteFrom(table).where('device_id', '=', id).execute();
      // device_tags and device_consoles go with the device (ON DELETE CASCADE).
      await trx.deleteFrom('devices').where('id', '=', id).execute();
    });
  }

  async revoke(id: string, now: number): Promise<void> {
    await this.db
      .updateTable('devices')
      .set({ revoked_at: now, secret_hash: null, online: 0, presence_changed_at: now })
      .where('id', '=', id)
      .execute();
  }

  /**
   * Records that a device went online or offline. False when it is unknown, revoked or already in
   * that state: only a real change belongs in the presence history.
   */
  async setPresence(id: string, online: boolean, at: number): Promise<boolean> {
    const flag = online ? 1 : 0;
    const result = await this.db
      .updateTable('devices')
      .set({ online: flag, presence_changed_at: at, last_seen_at: at })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .where('online', '!=', flag)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /** Marks every online device offline; returns the ids it changed. */
  async markAllOffline(at: number): Promise<string[]> {
    const online = await this.db.selectFrom('devices').select('id').where('online', '=', 1).execute();
    if (online.length === 0) return [];
    await this.db
      .updateTable('devices')
      .set({ online: 0, presence_changed_at: at })
      .where('online', '=', 1)
      .execute();
    return online.map((row) => row.id);
  }

  async recordInventory(id: string, report: InventoryReport, at: number): Promise<void> {
    await this.db
      .updateTable('devices')
      .set({
        inventory: JSON.stringify(report.inventory),
        inventory_at: at,
        last_seen_at: at,
        running_version: report.runningVersion,
        reported_board: report.reportedBoard,
        attached_board_problem: report.attachedBoardProblem,
      })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .execute();
  }

  /**
   * One UPDATE per device, each device once. `db` lets a caller run them inside its own
   * transaction (the health ingest writes a whole batch in one).
   */
  async recordHeartbeats(heartbeats: HeartbeatSummary[], db: Database = this.db): Promise<void> {
    for (const heartbeat of heartbeats) {
      await db
        .updateTable('devices')
        .set({ last_seen_at: heartbeat.receivedAt, health_problem: heartbeat.healthProblem })
        .where('id', '=', heartbeat.deviceId)
        .execute();
    }
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
