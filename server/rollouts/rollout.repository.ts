import { Inject, Injectable } from '@nestjs/common';
import type { Selectable } from 'kysely';
import {
  DeploymentState,
  type Rollout,
  type RolloutDevice,
  type RolloutOptions,
  type RolloutState,
  type RolloutTarget,
  type RolloutWave,
  type WaveConfig,
  type WaveState,
} from '../../protocol/api/rollouts.ts';
import {
  DEPLOYMENT_EVENT_TYPE,
  type DeploymentEventData,
  deploymentEventDataSchema,
  type DesiredState,
} from '../../protocol/schemas.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { RolloutDeviceTable, RolloutTable } from '../db/schema.ts';
import { artifactIdsOf } from './desired-deployment.ts';
import { type RolloutDeviceUpdate, updateRolloutDevices } from './rollout-device-updates.ts';

export type RolloutRecord = Rollout;

/** A wave as stored: its counts are not, they are counted from its devices when read. */
export type WaveRecord = Omit<RolloutWave, 'counts'>;

/** A device's deployment as stored, with what a rollback sends the device back to (never shown in the API). */
export type RolloutDeviceRecord = RolloutDevice & { previousDeployment: DesiredState['deployment'] };

/** A deployment report as the ingest stored it. */
export interface StoredReport {
  deploymentId: string;
  report: DeploymentEventData;
  message: string | undefined;
}

/** Every rollout, wave and per-device deployment state, written before the engine acts on it. */
@Injectable()
export class RolloutRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  transaction<T>(work: (repository: RolloutRepository) => Promise<T>): Promise<T> {
    return this.db.transaction().execute((trx) => work(new RolloutRepository(trx as unknown as Database)));
  }

  async insertRollout(
    rollout: RolloutRecord,
    waves: WaveRecord[],
    devices: RolloutDeviceRecord[],
  ): Promise<void> {
    await this.db
      .insertInto('rollouts')
      .values({
        id: rollout.id,
        name: rollout.name,
        release_id: rollout.releaseId,
        target: JSON.stringify(rollout.target),
        options: JSON.stringify(rollout.options),
        state: rollout.state,
        reason: rollout.reason,
        created_at: rollout.createdAt,
        updated_at: rollout.updatedAt,
      })
      .execute();
    await this.db
      .insertInto('rollout_waves')
      .values(
        waves.map((wave) => ({
          rollout_id: rollout.id,
          wave_index: wave.index,
          name: wave.name,
          config: JSON.stringify(wave.config),
          state: wave.state,
          started_at: wave.startedAt,
          finished_at: wave.finishedAt,
        })),
      )
      .execute();
    await this.insertDevices(rollout.id, devices);
  }

  async insertDevices(rolloutId: string, devices: RolloutDeviceRecord[]): Promise<void> {
    for (let start = 0; start < devices.length; start += 500) {
      await this.db
        .insertInto('rollout_devices')
        .values(
          devices.slice(start, start + 500).map((device) => ({
            rollout_id: rolloutId,
            device_id: device.deviceId,
            wave_index: device.waveIndex,
            deployment_id: device.deploymentId,
            state: device.state,
            attempt: device.attempt,
            artifact_id: device.artifactId,
            part_artifact_ids: device.partArtifactIds.length ? JSON.stringify(device.partArtifactIds) : null,
            previous_deployment: device.previousDeployment ? JSON.stringify(device.previousDeployment) : null,
            progress: device.progress,
            transfer_mode: device.transferMode,
            transfer_bytes: device.transferBytes,
            artifact_bytes: device.artifactBytes,
            reason: device.reason,
            notified_at: device.notifiedAt,
            soak_until: device.soakUntil,
            state_changed_at: device.stateChangedAt,
          })),
        )
        .execute();
    }
  }

  async getRollout(id: string): Promise<RolloutRecord | null> {
    const row = await this.db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toRollout(row) : null;
  }

  async listRollouts(states?: RolloutState[]): Promise<RolloutRecord[]> {
    let query = this.db.selectFrom('rollouts').selectAll();
    if (states) query = query.where('state', 'in', states);
    return (await query.orderBy('created_at', 'desc').orderBy('id').execute()).map(toRollout);
  }

  async setRolloutState(id: string, state: RolloutState, reason: string | null, now: number): Promise<void> {
    await this.db
      .updateTable('rollouts')
      .set({ state, reason, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async waves(rolloutId: string): Promise<WaveRecord[]> {
    const rows = await this.db
      .selectFrom('rollout_waves')
      .selectAll()
      .where('rollout_id', '=', rolloutId)
      .orderBy('wave_index')
      .execute();
    return rows.map((row) => ({
      index: row.wave_index,
      name: row.name,
      config: JSON.parse(row.config) as WaveConfig,
      state: row.state,
      startedAt: row.started_at,
      finishedAt: row.finished_at,
    }));
  }

  async setWaveState(
    rolloutId: string,
    index: number,
    state: WaveState,
    changes: { startedAt?: number; finishedAt?: number },
  ): Promise<void> {
    await this.db
      .updateTable('rollout_waves')
      .set({
        state,
        ...(changes.startedAt !== undefined ? { started_at: changes.startedAt } : {}),
        ...(changes.finishedAt !== undefined ? { finished_at: changes.finishedAt } : {}),
      })
      .where('rollout_id', '=', rolloutId)
      .where('wave_index', '=', index)
      .execute();
  }

  /** The registered (not revoked) devices that are not in the rollout: its possible late joiners. */
  async devicesOutside(rolloutId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('devices')
      .select('devices.id')
      .where('devices.revoked_at', 'is', null)
      .where(({ not, exists, selectFrom }) =>
        not(
          exists(
            selectFrom('rollout_devices')
              .select('rollout_devices.device_id')
              .where('rollout_devices.rollout_id', '=', rolloutId)
              .whereRef('rollout_devices.device_id', '=', 'devices.id'),
          ),
        ),
      )
      .execute();
    return rows.map((row) => row.id);
  }

  async devices(rolloutId: string): Promise<RolloutDeviceRecord[]> {
    const rows = await this.db
      .selectFrom('rollout_devices')
      .selectAll()
      .where('rollout_id', '=', rolloutId)
      .orderBy('wave_index')
      .orderBy('device_id')
      .execute();
    return rows.map(toDevice);
  }

  /** Every rollout's devices by deployment state, in one grouped query: the rollout list's progress. */
  async stateCountsByRollout(): Promise<Map<string, Array<{ state: DeploymentState; count: number }>>> {
    const rows = await this.db
      .selectFrom('rollout_devices')
      .select(['rollout_id', 'state', (eb) => eb.fn.countAll<number>().as('count')])
      .groupBy(['rollout_id', 'state'])
      .execute();
    const byRollout = new Map<string, Array<{ state: DeploymentState; count: number }>>();
    for (const row of rows) {
      const entries = byRollout.get(row.rollout_id) ?? [];
      entries.push({ state: row.state, count: Number(row.count) });
      byRollout.set(row.rollout_id, entries);
    }
    return byRollout;
  }

  /** The names of a rollout's devices (a deleted device has none), joined here rather than per device. */
  async deviceNames(rolloutId: string): Promise<Map<string, string>> {
    const rows = await this.db
      .selectFrom('rollout_devices')
      .innerJoin('devices', 'devices.id', 'rollout_devices.device_id')
      .select(['rollout_devices.device_id', 'devices.name'])
      .where('rollout_devices.rollout_id', '=', rolloutId)
      .execute();
    return new Map(rows.map((row) => [row.device_id, row.name]));
  }

  /** The device deployments with these ids, by id (a deployment id is unique across rollouts). */
  async findByDeploymentIds(
    deploymentIds: readonly string[],
  ): Promise<Map<string, { rolloutId: string; device: RolloutDeviceRecord }>> {
    const found = new Map<string, { rolloutId: string; device: RolloutDeviceRecord }>();
    for (let start = 0; start < deploymentIds.length; start += 500) {
      const rows = await this.db
        .selectFrom('rollout_devices')
        .selectAll()
        .where('deployment_id', 'in', deploymentIds.slice(start, start + 500))
        .execute();
      for (const row of rows)
        found.set(row.deployment_id, { rolloutId: row.rollout_id, device: toDevice(row) });
    }
    return found;
  }

  /**
   * The deployment reports stored for these device deployments, in the order the devices made
   * them (their device time, then arrival). Read by device, which the events' index covers.
   */
  async storedReports(
    deployments: ReadonlyArray<{ deviceId: string; deploymentId: string }>,
  ): Promise<StoredReport[]> {
    const reports: StoredReport[] = [];
    for (let start = 0; start < deployments.length; start += 500) {
      const batch = deployments.slice(start, start + 500);
      const rows = await this.db
        .selectFrom('device_events')
        .select(['deployment_id', 'message', 'data'])
        .where('type', '=', DEPLOYMENT_EVENT_TYPE)
        .where(
          'device_id',
          'in',
          batch.map((deployment) => deployment.deviceId),
        )
        .where(
          'deployment_id',
          'in',
          batch.map((deployment) => deployment.deploymentId),
        )
        .orderBy('device_id')
        .orderBy('at')
        .orderBy('received_at')
        .execute();
      for (const row of rows) {
        // Stored only once it decoded as a deployment event; parsed again for its type.
        const report = deploymentEventDataSchema.safeParse(row.data === null ? null : JSON.parse(row.data));
        if (report.success && row.deployment_id)
          reports.push({
            deploymentId: row.deployment_id,
            report: report.data,
            message: row.message ?? undefined,
          });
      }
    }
    return reports;
  }

  /** Many devices' changes in a few statements (`updateRolloutDevices`). */
  async updateDevices(rolloutId: string, updates: readonly RolloutDeviceUpdate[]): Promise<void> {
    await updateRolloutDevices(this.db, rolloutId, updates);
  }

  async desired(deviceId: string): Promise<DesiredState | null> {
    const row = await this.db
      .selectFrom('device_desired')
      .select('payload')
      .where('device_id', '=', deviceId)
      .executeTakeFirst();
    return row ? (JSON.parse(row.payload) as DesiredState) : null;
  }

  /**
   * Whether a deployment sent this device this artifact: its current desired state, or the one the
   * current one replaced (a download still in flight, or resumed, when the newer one arrived). The
   * replaced one is found from the device deployment that wrote the current one: a notify keeps the
   * deployment it replaced, a rollback goes back to the deployment of the one it replaced.
   */
  async sentArtifact(deviceId: string, artifactId: string): Promise<boolean> {
    const current = (await this.desired(deviceId))?.deployment ?? null;
    if (!current) return false;
    if (artifactIdsOf(current).includes(artifactId)) return true;
    const rows = await this.db
      .selectFrom('rollout_devices')
      .select(['deployment_id', 'artifact_id', 'part_artifact_ids', 'previous_deployment', 'state'])
      .where('device_id', '=', deviceId)
      .execute();
    return rows.some((row) => {
      const previous = row.previous_deployment
        ? (JSON.parse(row.previous_deployment) as DesiredState['deployment'])
        : null;
      if (!current.rollbackOrder)
        return row.deployment_id === current.id && artifactIdsOf(previous).includes(artifactId);
      const sent = [
        row.artifact_id,
        ...(row.part_artifact_ids ? (JSON.parse(row.part_artifact_ids) as string[]) : []),
      ];
      return (
        row.state === DeploymentState.RolledBack && previous?.id === current.id && sent.includes(artifactId)
      );
    });
  }

  async desiredFor(deviceIds: string[]): Promise<Map<string, DesiredState>> {
    const result = new Map<string, DesiredState>();
    for (let start = 0; start < deviceIds.length; start += 500) {
      const rows = await this.db
        .selectFrom('device_desired')
        .select(['device_id', 'payload'])
        .where('device_id', 'in', deviceIds.slice(start, start + 500))
        .execute();
      for (const row of rows) result.set(row.device_id, JSON.parse(row.payload) as DesiredState);
    }
    return result;
  }

  /** Every stored desired state, or only those no broker has acknowledged yet (`unpublished`). */
  async allDesired({ unpublished = false } = {}): Promise<
    Array<{ deviceId: string; desired: DesiredState }>
  > {
    let query = this.db.selectFrom('device_desired').select(['device_id', 'payload']);
    if (unpublished) query = query.where('published_at', 'is', null);
    const rows = await query.execute();
    return rows.map((row) => ({ deviceId: row.device_id, desired: JSON.parse(row.payload) as DesiredState }));
  }

  /** A new payload is unpublished until `markPublished`: a replica dying in between leaves it for another to send. */
  async saveDesired(deviceId: string, desired: DesiredState, now: number): Promise<void> {
    await this.saveDesiredStates([{ deviceId, desired }], now);
  }

  /** `saveDesired` for many devices, a few statements for all; a device named twice keeps its last. */
  async saveDesiredStates(
    states: ReadonlyArray<{ deviceId: string; desired: DesiredState }>,
    now: number,
  ): Promise<void> {
    const rows = [
      ...new Map(
        states.map(({ deviceId, desired }) => [
          deviceId,
          {
            device_id: deviceId,
            version: desired.version,
            payload: JSON.stringify(desired),
            deployment_version: desired.deployment?.version ?? null,
            updated_at: now,
            published_at: null,
          },
        ]),
      ).values(),
    ];
    for (let start = 0; start < rows.length; start += 500) {
      await this.db
        .insertInto('device_desired')
        .values(rows.slice(start, start + 500))
        .onConflict((conflict) =>
          conflict.column('device_id').doUpdateSet((eb) => ({
            version: eb.ref('excluded.version'),
            payload: eb.ref('excluded.payload'),
            deployment_version: eb.ref('excluded.deployment_version'),
            updated_at: eb.ref('excluded.updated_at'),
            published_at: eb.ref('excluded.published_at'),
          })),
        )
        .execute();
    }
  }

  /**
   * Records that the broker acknowledged these desired states. Only the version sent is marked: a
   * newer one saved meanwhile stays unpublished.
   */
  async markPublished(
    published: ReadonlyArray<{ deviceId: string; version: number }>,
    now: number,
  ): Promise<void> {
    const byVersion = new Map<number, string[]>();
    for (const { deviceId, version } of published) {
      const deviceIds = byVersion.get(version) ?? [];
      deviceIds.push(deviceId);
      byVersion.set(version, deviceIds);
    }
    for (const [version, deviceIds] of byVersion) {
      for (let start = 0; start < deviceIds.length; start += 500) {
        await this.db
          .updateTable('device_desired')
          .set({ published_at: now })
          .where('version', '=', version)
          .where('device_id', 'in', deviceIds.slice(start, start + 500))
          .execute();
      }
    }
  }

  async log(rolloutId: string, message: string, now: number): Promise<void> {
    const last = await this.db
      .selectFrom('rollout_log')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('rollout_id', '=', rolloutId)
      .executeTakeFirst();
    await this.db
      .insertInto('rollout_log')
      .values({ rollout_id: rolloutId, at: now, seq: Number(last?.seq ?? 0) + 1, message })
      .execute();
  }

  async logEntries(rolloutId: string): Promise<Array<{ at: number; message: string }>> {
    return this.db
      .selectFrom('rollout_log')
      .select(['at', 'message'])
      .where('rollout_id', '=', rolloutId)
      .orderBy('seq')
      .execute();
  }
}

function toRollout(row: Selectable<RolloutTable>): RolloutRecord {
  return {
    id: row.id,
    name: row.name,
    releaseId: row.release_id,
    target: JSON.parse(row.target) as RolloutTarget,
    options: JSON.parse(row.options) as RolloutOptions,
    state: row.state,
    reason: row.reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toDevice(row: Selectable<RolloutDeviceTable>): RolloutDeviceRecord {
  return {
    deviceId: row.device_id,
    waveIndex: row.wave_index,
    deploymentId: row.deployment_id,
    state: row.state,
    attempt: row.attempt,
    artifactId: row.artifact_id,
    partArtifactIds: row.part_artifact_ids ? (JSON.parse(row.part_artifact_ids) as string[]) : [],
    previousDeployment: row.previous_deployment
      ? (JSON.parse(row.previous_deployment) as DesiredState['deployment'])
      : null,
    progress: row.progress,
    transferMode: row.transfer_mode,
    transferBytes: row.transfer_bytes,
    artifactBytes: row.artifact_bytes,
    reason: row.reason,
    notifiedAt: row.notified_at,
    soakUntil: row.soak_until,
    stateChangedAt: row.state_changed_at,
  };
}
