import { Inject, Injectable } from '@nestjs/common';
import type { ConsoleSummary } from '../../protocol/api/consoles.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

/** A console as stored: the summary the API lists, plus the text it serves on its own. */
export interface StoredConsole extends ConsoleSummary {
  text: string;
}

@Injectable()
export class ConsoleRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  /** Replaces the device's console of this artifact version (an upload is the whole tail, not a delta). */
  async put(deviceId: string, console: StoredConsole): Promise<void> {
    const values = { text: console.text, size: console.size, updated_at: console.updatedAt };
    await this.db
      .insertInto('device_consoles')
      .values({ device_id: deviceId, artifact: console.artifact, version: console.version, ...values })
      .onConflict((conflict) => conflict.columns(['device_id', 'artifact', 'version']).doUpdateSet(values))
      .execute();
  }

  /** Newest first. */
  async list(deviceId: string): Promise<ConsoleSummary[]> {
    const rows = await this.db
      .selectFrom('device_consoles')
      .select(['artifact', 'version', 'size', 'updated_at'])
      .where('device_id', '=', deviceId)
      .orderBy('updated_at', 'desc')
      .orderBy('artifact')
      .orderBy('version')
      .execute();
    return rows.map((row) => ({
      artifact: row.artifact,
      version: row.version,
      size: row.size,
      updatedAt: row.updated_at,
    }));
  }

  async get(deviceId: string, artifact: string, version: string): Promise<StoredConsole | null> {
    const row = await this.db
      .selectFrom('device_consoles')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('artifact', '=', artifact)
      .where('version', '=', version)
      .executeTakeFirst();
    return row
      ? {
          artifact: row.artifact,
          version: row.version,
          size: row.size,
          updatedAt: row.updated_at,
          text: row.text,
        }
      : null;
  }

  /** Deletes all but the device's `keep` most recently updated consoles; returns how many went. */
  async prune(deviceId: string, keep: number): Promise<number> {
    const stale = await this.db
      .selectFrom('device_consoles')
      .select(['artifact', 'version'])
      .where('device_id', '=', deviceId)
      .orderBy('updated_at', 'desc')
      .orderBy('artifact')
      .orderBy('version')
      .offset(keep)
      .limit(1000)
      .execute();
    for (const row of stale) {
      await this.db
        .deleteFrom('device_consoles')
        .where('device_id', '=', deviceId)
        .where('artifact', '=', row.artifact)
        .where('version', '=', row.version)
        .execute();
    }
    return stale.length;
  }
}
