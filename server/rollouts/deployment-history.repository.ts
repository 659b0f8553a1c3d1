import { Inject, Injectable } from '@nestjs/common';
import type { DeviceDeployment } from '../../protocol/api/devices.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';

const OUTCOMES = new Set(['committed', 'failed', 'rolled-back']);

/** Every rollout that included one device, newest first: the rollouts module owns these tables. */
@Injectable()
export class DeploymentHistoryRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async forDevice(deviceId: string): Promise<DeviceDeployment[]> {
    const rows = await this.db
      .selectFrom('rollout_devices')
      .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
      .innerJoin('releases', 'releases.id', 'rollouts.release_id')
      .leftJoin('artifacts', 'artifacts.id', 'rollout_devices.artifact_id')
      .select([
        'rollouts.id as rolloutId',
        'rollouts.name as rolloutName',
        'rollouts.state as rolloutState',
        'rollouts.created_at as createdAt',
        'releases.name as release',
        'artifacts.version as version',
        'rollout_devices.deployment_id as deploymentId',
        'rollout_devices.state as state',
        'rollout_devices.reason as reason',
        'rollout_devices.attempt as attempt',
        'rollout_devices.notified_at as notifiedAt',
        'rollout_devices.state_changed_at as stateChangedAt',
      ])
      .where('rollout_devices.device_id', '=', deviceId)
      .orderBy('rollouts.created_at', 'desc')
      .orderBy('rollouts.id', 'desc')
      .execute();
    return rows.map((row) => ({
      ...row,
      outcome: OUTCOMES.has(row.state) ? (row.state as DeviceDeployment['outcome']) : null,
    }));
  }
}
