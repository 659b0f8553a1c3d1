import { Inject, Injectable } from '@nestjs/common';
import type { ConfigScope } from '../../protocol/api/config-variables.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { ConfigVariableTable } from '../db/schema.ts';
import type { StoredVariable, VariableLayers } from './config-resolution.ts';

/** Ids per `IN (…)` list: well inside every database's limit on bound parameters. */
const BATCH = 500;

const SCOPE_ORDER: Record<ConfigScope, number> = { fleet: 0, tag: 1, device: 2 };

function stored(row: ConfigVariableTable): StoredVariable {
  return {
    scope: row.scope,
    target: row.target,
    name: row.name,
    value: row.value,
    secret: row.secret === 1,
    updatedAt: row.updated_at,
    updatedBy: row.updated_by,
  };
}

function batches<T>(items: readonly T[]): T[][] {
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += BATCH) result.push(items.slice(start, start + BATCH));
  return result;
}

/** Configuration variables at every scope, and the bulk reads that resolve many devices' sets at once. */
@Injectable()
export class ConfigVariableRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async put(variable: StoredVariable): Promise<void> {
    const values = {
      value: variable.value,
      secret: variable.secret ? 1 : 0,
      updated_at: variable.updatedAt,
      updated_by: variable.updatedBy,
    };
    await this.db
      .insertInto('config_variables')
      .values({ scope: variable.scope, target: variable.target, name: variable.name, ...values })
      .onConflict((conflict) => conflict.columns(['scope', 'target', 'name']).doUpdateSet(values))
      .execute();
  }

  async get(scope: ConfigScope, target: string, name: string): Promise<StoredVariable | null> {
    const row = await this.db
      .selectFrom('config_variables')
      .selectAll()
      .where('scope', '=', scope)
      .where('target', '=', target)
      .where('name', '=', name)
      .executeTakeFirst();
    return row ? stored(row) : null;
  }

  async delete(scope: ConfigScope, target: string, name: string): Promise<void> {
    await this.db
      .deleteFrom('config_variables')
      .where('scope', '=', scope)
      .where('target', '=', target)
      .where('name', '=', name)
      .execute();
  }

  /** How many variables one scope and target has. */
  async count(scope: ConfigScope, target: string): Promise<number> {
    const row = await this.db
      .selectFrom('config_variables')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('scope', '=', scope)
      .where('target', '=', target)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  /** Every variable, or one scope's (and target's): fleet, then tags, then devices, each by target and name. */
  async list(filter: {
    scope?: ConfigScope | undefined;
    target?: string | undefined;
  }): Promise<StoredVariable[]> {
    let query = this.db.selectFrom('config_variables').selectAll();
    if (filter.scope) query = query.where('scope', '=', filter.scope);
    if (filter.target !== undefined) query = query.where('target', '=', filter.target);
    const rows = await query.orderBy('target').orderBy('name').execute();
    return rows.map(stored).sort((a, b) => SCOPE_ORDER[a.scope] - SCOPE_ORDER[b.scope]);
  }

  /** Deletes a device's own variables (the device was deleted). */
  async deleteDevice(deviceId: string): Promise<void> {
    await this.db
      .deleteFrom('config_variables')
      .where('scope', '=', 'device')
      .where('target', '=', deviceId)
      .execute();
  }

  /** The tags of these devices, each list sorted. */
  async tagsOf(deviceIds: readonly string[]): Promise<Map<string, string[]>> {
    const tags = new Map<string, string[]>();
    for (const ids of batches(deviceIds)) {
      const rows = await this.db
        .selectFrom('device_tags')
        .select(['device_id', 'tag'])
        .where('device_id', 'in', ids)
        .orderBy('tag')
        .execute();
      for (const row of rows) tags.set(row.device_id, [...(tags.get(row.device_id) ?? []), row.tag]);
    }
    return tags;
  }

  /**
   * Every variable that can apply to these devices, in a few queries whatever their number: the
   * fleet's, those of the tags they have, and their own.
   */
  async layersFor(deviceIds: readonly string[], tags: ReadonlySet<string>): Promise<VariableLayers> {
    const fleet = await this.list({ scope: 'fleet', target: '' });
    const byTag = await this.grouped('tag', [...tags]);
    const byDevice = await this.grouped('device', deviceIds);
    return { fleet, byTag, byDevice };
  }

  /** Devices (not revoked) that a change at this scope reaches: all, a tag's, or the one. */
  async devicesReachedBy(scope: ConfigScope, target: string): Promise<string[]> {
    let query = this.db.selectFrom('devices').select('devices.id').where('devices.revoked_at', 'is', null);
    if (scope === 'device') query = query.where('devices.id', '=', target);
    if (scope === 'tag')
      query = query.where((eb) =>
        eb.exists(
          eb
            .selectFrom('device_tags')
            .select('device_tags.device_id')
            .whereRef('device_tags.device_id', '=', 'devices.id')
            .where('device_tags.tag', '=', target),
        ),
      );
    return (await query.execute()).map((row) => row.id);
  }

  private async grouped(
    scope: 'tag' | 'device',
    targets: readonly string[],
  ): Promise<Map<string, StoredVariable[]>> {
    const grouped = new Map<string, StoredVariable[]>();
    for (const batch of batches(targets)) {
      const rows = await this.db
        .selectFrom('config_variables')
        .selectAll()
        .where('scope', '=', scope)
        .where('target', 'in', batch)
        .execute();
      for (const row of rows) grouped.set(row.target, [...(grouped.get(row.target) ?? []), stored(row)]);
    }
    return grouped;
  }
}
