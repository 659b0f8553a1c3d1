import { Inject, Injectable } from '@nestjs/common';
import type { StoredHealth } from '../../protocol/api/devices.ts';
import type { DeviceEvent, Health, Inventory, Presence } from '../../protocol/schemas.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { storedDeviceTime } from './device-clock.ts';
import { attachedBoardProblem, healthProblem, runningVersion } from './health-problem.ts';

export interface HealthToStore {
  deviceId: string;
  health: Health;
  receivedAt: number;
}

export interface EventToStore {
  deviceId: string;
  event: DeviceEvent;
  receivedAt: number;
}

/** Parameters above this per statement would cross SQLite's limit of 32,766 bound variables. */
const HEALTH_ROWS_PER_INSERT = 500;
const EVENT_ROWS_PER_INSERT = 500;

/**
 * What devices report: health samples, presence history and events are this module's tables.
 * What a report changes on the device itself (online, last seen, inventory, health problem) goes
 * through the devices module's repository, which owns the devices table.
 */
@Injectable()
export class TelemetryRepository {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
  ) {}

  /** Records a presence change; returns false when the device is unknown, revoked, or already in that state. */
  async recordPresence(deviceId: string, presence: Presence, receivedAt: number): Promise<boolean> {
    if (!(await this.devices.setPresence(deviceId, presence.state === 'online', receivedAt))) return false;
    await this.db
      .insertInto('presence_history')
      .values({ device_id: deviceId, at: receivedAt, state: presence.state, reason: presence.reason })
      .execute();
    return true;
  }

  /** Devices cannot be connected to an embedded broker that just started; the history says why. */
  async markAllOffline(reason: string, now: number): Promise<number> {
    const wentOffline = await this.devices.markAllOffline(now);
    if (wentOffline.length === 0) return 0;
    await this.db
      .insertInto('presence_history')
      .values(
        wentOffline.map((deviceId) => ({ device_id: deviceId, at: now, state: 'offline' as const, reason })),
      )
      .execute();
    return wentOffline.length;
  }

  async recordInventory(deviceId: string, inventory: Inventory, receivedAt: number): Promise<void> {
    const report = {
      inventory,
      runningVersion: runningVersion(inventory),
      reportedBoard: inventory.board,
      attachedBoardProblem: attachedBoardProblem(inventory),
    };
    await this.devices.recordInventory(deviceId, report, receivedAt);
  }

  async insertHealth(samples: HealthToStore[]): Promise<void> {
    if (samples.length === 0) return;
    await this.db.transaction().execute(async (trx) => {
      for (let start = 0; start < samples.length; start += HEALTH_ROWS_PER_INSERT) {
        const chunk = samples.slice(start, start + HEALTH_ROWS_PER_INSERT);
        await trx
          .insertInto('health_samples')
          .values(
            chunk.map(({ deviceId, health, receivedAt }) => ({
              device_id: deviceId,
              at: storedDeviceTime(health.at, receivedAt),
              received_at: receivedAt,
              uptime_seconds: health.uptimeSeconds,
              load1: health.load[0],
              load5: health.load[1],
              load15: health.load[2],
              memory_total_bytes: health.memory.totalBytes,
              memory_available_bytes: health.memory.availableBytes,
              disk_total_bytes: health.disk.totalBytes,
              disk_free_bytes: health.disk.freeBytes,
              cpu_temperature_celsius: health.cpuTemperatureCelsius,
              agent_rss_bytes: health.agentRssBytes,
            })),
          )
          .execute();
      }
      const latest = new Map<string, HealthToStore>();
      for (const sample of samples) latest.set(sample.deviceId, sample);
      const heartbeats = [...latest.values()].map(({ deviceId, receivedAt, health }) => ({
        deviceId,
        receivedAt,
        healthProblem: healthProblem(health),
      }));
      await this.devices.recordHeartbeats(heartbeats, trx);
    });
  }

  /** Stores an event once: a redelivered event (same device and id) changes nothing. */
  async insertEvent(deviceId: string, event: DeviceEvent, receivedAt: number): Promise<void> {
    await this.insertEvents([{ deviceId, event, receivedAt }]);
  }

  /** Stores events, a few statements for all; one stored already (redelivered) is left as it is. */
  async insertEvents(events: readonly EventToStore[]): Promise<void> {
    for (let start = 0; start < events.length; start += EVENT_ROWS_PER_INSERT) {
      await this.db
        .insertInto('device_events')
        .values(
          events.slice(start, start + EVENT_ROWS_PER_INSERT).map(({ deviceId, event, receivedAt }) => ({
            device_id: deviceId,
            event_id: event.id,
            at: storedDeviceTime(event.at, receivedAt),
            received_at: receivedAt,
            type: event.type,
            deployment_id: event.deploymentId ?? null,
            message: event.message ?? null,
            data: event.data ? JSON.stringify(event.data) : null,
          })),
        )
        .onConflict((conflict) => conflict.columns(['device_id', 'event_id']).doNothing())
        .execute();
    }
  }

  async healthHistory(deviceId: string, from: number, to: number, limit: number): Promise<StoredHealth[]> {
    const rows = await this.db
      .selectFrom('health_samples')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('at', '>=', from)
      .where('at', '<=', to)
      .orderBy('at')
      .limit(limit)
      .execute();
    return rows.map(toStoredHealth);
  }

  async latestHealth(deviceId: string): Promise<StoredHealth | null> {
    const row = await this.db
      .selectFrom('health_samples')
      .selectAll()
      .where('device_id', '=', deviceId)
      .orderBy('at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? toStoredHealth(row) : null;
  }

  /** The device's last sample before `at` (device time, as stored), or null. */
  async healthBefore(deviceId: string, at: number): Promise<StoredHealth | null> {
    const row = await this.db
      .selectFrom('health_samples')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('at', '<', at)
      .orderBy('at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? toStoredHealth(row) : null;
  }

  /** These devices' samples received between `from` and `to`, oldest first: what another replica stored. */
  async healthReceivedBetween(
    deviceIds: readonly string[],
    from: number,
    to: number,
  ): Promise<Array<{ deviceId: string; sample: StoredHealth }>> {
    if (deviceIds.length === 0) return [];
    const rows = await this.db
      .selectFrom('health_samples')
      .selectAll()
      .where('received_at', '>=', from)
      .where('received_at', '<=', to)
      .where('device_id', 'in', deviceIds)
      .orderBy('received_at')
      .orderBy('id')
      .execute();
    return rows.map((row) => ({ deviceId: row.device_id, sample: toStoredHealth(row) }));
  }

  async presenceHistory(deviceId: string, from: number, to: number) {
    return this.db
      .selectFrom('presence_history')
      .select(['at', 'state', 'reason'])
      .where('device_id', '=', deviceId)
      .where('at', '>=', from)
      .where('at', '<=', to)
      .orderBy('at')
      .orderBy('id')
      .execute();
  }

  async events(deviceId: string, from: number, to: number, limit: number) {
    const rows = await this.db
      .selectFrom('device_events')
      .selectAll()
      .where('device_id', '=', deviceId)
      .where('at', '>=', from)
      .where('at', '<=', to)
      .orderBy('at')
      .orderBy('event_id')
      .limit(limit)
      .execute();
    return rows.map((row) => ({
      id: row.event_id,
      at: row.at,
      receivedAt: row.received_at,
      type: row.type,
      deploymentId: row.deployment_id,
      message: row.message,
      data: row.data ? (JSON.parse(row.data) as Record<string, unknown>) : null,
    }));
  }

  /** Retention counts from the server's receive time: a device's own `at` could keep a row for ever. */
  async deleteHealthBefore(cutoff: number): Promise<number> {
    const result = await this.db
      .deleteFrom('health_samples')
      .where('received_at', '<', cutoff)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

function toStoredHealth(row: {
  at: number;
  received_at: number;
  uptime_seconds: number;
  load1: number;
  load5: number;
  load15: number;
  memory_total_bytes: number;
  memory_available_bytes: number;
  disk_total_bytes: number;
  disk_free_bytes: number;
  cpu_temperature_celsius: number | null;
  agent_rss_bytes: number;
}): StoredHealth {
  return {
    at: row.at,
    receivedAt: row.received_at,
    uptimeSeconds: row.uptime_seconds,
    load: [row.load1, row.load5, row.load15],
    memory: { totalBytes: row.memory_total_bytes, availableBytes: row.memory_available_bytes },
    disk: { totalBytes: row.disk_total_bytes, freeBytes: row.disk_free_bytes },
    cpuTemperatureCelsius: row.cpu_temperature_celsius,
    agentRssBytes: row.agent_rss_bytes,
  };
}
