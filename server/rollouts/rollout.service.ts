import { Inject, Injectable } from '@nestjs/common';
import {
  type CreateRollout,
  type RolloutDevice,
  RolloutState,
  type RolloutTransfer,
  WaveState,
} from '../../protocol/api/rollouts.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { invalidRequest, notFound } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ReleaseService } from '../releases/release.service.ts';
import { type RolloutRecord, RolloutRepository, type WaveRecord } from './rollout.repository.ts';
import { RolloutEngine } from './rollout-engine.ts';
import { newRolloutDevice } from './rollout-planner.ts';
import { matchTarget } from './rollout-target.ts';
import { targetWarnings } from './target-warnings.ts';
import { countWave } from './wave-evaluator.ts';
import { planWaves } from './wave-planner.ts';

@Injectable()
export class RolloutService {
  constructor(
    @Inject(RolloutRepository) private readonly rollouts: RolloutRepository,
    @Inject(DeviceRepository) private readonly devices: DeviceRepository,
    @Inject(ReleaseService) private readonly releases: ReleaseService,
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Shows how the target splits into waves without creating anything (the dashboard's preview). */
  async preview(input: CreateRollout) {
    const release = await this.releases.getOrThrow(input.release);
    const targets = await matchTarget(this.devices, input.target);
    const plan = planWaves(
      targets.map((device) => device.id),
      input.waves,
    );
    return {
      release: release.name,
      targetDevices: targets.length,
      waves: plan.map((members, index) => ({
        name: waveName(input.waves[index]?.name, index),
        devices: members,
      })),
      warnings: targetWarnings(targets, input.dynamic),
    };
  }

  async create(input: CreateRollout): Promise<RolloutRecord> {
    const release = await this.releases.getOrThrow(input.release);
    const targets = await matchTarget(this.devices, input.target);
    if (targets.length === 0 && !input.dynamic) throw invalidRequest('no device matches the target');
    const plan = planWaves(
      targets.map((device) => device.id),
      input.waves,
    );
    const now = this.clock.now();
    const rollout: RolloutRecord = {
      id: generateId('ro'),
      name: input.name ?? `${release.name} rollout`,
      releaseId: release.id,
      target: input.target,
      options: { onTrip: input.onTrip, rollbackOnAbort: input.rollbackOnAbort, dynamic: input.dynamic },
      state: RolloutState.Running,
      reason: null,
      createdAt: now,
      updatedAt: now,
    };
    const waves: WaveRecord[] = input.waves.map((config, index) => ({
      index,
      name: waveName(config.name, index),
      config,
      state: WaveState.Pending,
      startedAt: null,
      finishedAt: null,
    }));
    const devices = plan.flatMap((members, index) =>
      members.map((deviceId) => newRolloutDevice(deviceId, index, now, generateId('dep'))),
    );
    await this.rollouts.transaction(async (repository) => {
      await repository.insertRollout(rollout, waves, devices);
      await repository.log(
        rollout.id,
        `created for release ${release.name}: ${devices.length} device(s) in ${waves.length} wave(s)`,
        now,
      );
    });
    void this.engine.tick();
    return rollout;
  }

  async getOrThrow(id: string): Promise<RolloutRecord> {
    const rollout = await this.rollouts.getRollout(id);
    if (!rollout) throw notFound(`rollout ${id}`);
    return rollout;
  }

  /** The live view: the rollout, each wave with its counts, each device with state, progress and reason. */
  async status(id: string) {
    const rollout = await this.getOrThrow(id);
    const waves = await this.rollouts.waves(id);
    const devices = await this.rollouts.devices(id);
    const names = await this.rollouts.deviceNames(id);
    return {
      ...rollout,
      waves: waves.map((wave) => ({
        ...wave,
        counts: countWave(
          devices.filter((device) => device.waveIndex === wave.index).map((device) => device.state),
        ),
      })),
      devices: devices.map(({ previousDeployment: _previous, ...device }) => ({
        ...device,
        deviceName: names.get(device.deviceId) ?? null,
      })),
      transfer: transferOf(devices),
      log: await this.rollouts.logEntries(id),
    };
  }

  /** Every rollout, newest first, with its devices counted over all waves. */
  async list() {
    const [rollouts, counts] = await Promise.all([
      this.rollouts.listRollouts(),
      this.rollouts.stateCountsByRollout(),
    ]);
    return rollouts.map((rollout) => ({ ...rollout, counts: countWave(counts.get(rollout.id) ?? []) }));
  }

  async act(id: string, action: 'pause' | 'resume' | 'abort' | 'approve', by: string) {
    const rollout = await this.getOrThrow(id);
    const done =
      action === 'pause'
        ? await this.engine.pause(id, by)
        : action === 'resume'
          ? await this.engine.resume(id, by)
          : action === 'approve'
            ? await this.engine.approve(id, by)
            : await this.engine.abort(id, by);
    if (!done) {
      throw new BoardfleetError(
        'conflict',
        `cannot ${action} rollout ${id}: it is ${rollout.state}${action === 'approve' ? ' and no wave awaits approval' : ''}`,
      );
    }
    void this.engine.tick();
    return this.status(id);
  }
}

function waveName(name: string | undefined, index: number): string {
  return name ?? `wave ${index + 1}`;
}

/** What the rollout's downloads cost, summed over the devices that reported one. */
export function transferOf(devices: readonly RolloutDevice[]): RolloutTransfer {
  const transfer: RolloutTransfer = { deltaDevices: 0, fullDevices: 0, bytes: 0, artifactBytes: 0 };
  for (const device of devices) {
    if (!device.transferMode) continue;
    if (device.transferMode === 'delta') transfer.deltaDevices++;
    else transfer.fullDevices++;
    transfer.bytes += device.transferBytes ?? 0;
    transfer.artifactBytes += device.artifactBytes ?? 0;
  }
  return transfer;
}
