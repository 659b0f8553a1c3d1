import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';
import type { ReleaseService } from '../releases/release.service.ts';
import { chooseDelivery, deploymentBoards, nextDesired } from './desired-deployment.ts';
import type { RolloutRepository } from './rollout.repository.ts';
import { planDelivery } from './rollout-planner.ts';
import type { NotifyStep, RolloutStep, WriteStep } from './rollout-steps.ts';

type Publication = { deviceId: string; desired: DesiredState };

export interface RolloutExecutorDependencies {
  rollouts: RolloutRepository;
  devices: DeviceRepository;
  releases: ReleaseService;
  mqtt: ServerMqttClient;
}

/**
 * Applies the planner's steps through the repository and the broker. Every state is written
 * before the desired state that acts on it is published, so a crash in between leaves the
 * database ahead of the devices, never behind.
 */
export class RolloutExecutor {
  constructor(private readonly deps: RolloutExecutorDependencies) {}

  async apply(rolloutId: string, steps: readonly RolloutStep[]): Promise<void> {
    const sentTo = steps.flatMap((step) => (step.kind === 'send-desired' ? [step.deviceId] : []));
    const desired = sentTo.length > 0 ? await this.deps.rollouts.desiredFor(sentTo) : new Map();
    const publications: Publication[] = [];
    for (const step of steps) {
      if (step.kind === 'notify') await this.notify(rolloutId, step);
      else publications.push(...(await writeStep(this.deps.rollouts, rolloutId, step, desired)));
    }
    await this.publish(publications);
  }

  /** Republishes every stored desired state (the embedded broker forgets retained messages on restart). */
  async republishAll(): Promise<void> {
    await this.publish(await this.deps.rollouts.allDesired());
  }

  /**
   * Notifies a batch: everything it needs is read in a few queries, every state change is
   * written in one transaction, and only then are the desired states published.
   */
  private async notify(rolloutId: string, step: NotifyStep): Promise<void> {
    const release = await this.deps.releases.getOrThrow(step.releaseId);
    const ids = step.devices.map((device) => device.deviceId);
    const records = new Map(
      (await this.deps.devices.list({ ids, includeRevoked: true, limit: ids.length, offset: 0 })).map(
        (record) => [record.id, record],
      ),
    );
    const desired = await this.deps.rollouts.desiredFor(ids);
    // Read before the transaction: SQLite has one connection, which the transaction holds.
    const artifactByBoard = new Map<string, ArtifactRecord | null>();
    for (const record of records.values()) {
      for (const board of deploymentBoards(record)) {
        if (!artifactByBoard.has(board))
          artifactByBoard.set(board, await this.deps.releases.artifactFor(release, board));
      }
    }
    const publications = await this.deps.rollouts.transaction(async (rollouts) => {
      const written: Publication[] = [];
      for (const device of step.devices) {
        const delivery = chooseDelivery(records.get(device.deviceId), artifactByBoard, release.name);
        const previous = desired.get(device.deviceId)?.deployment ?? null;
        for (const deliveryStep of planDelivery(device, delivery, previous, step.at))
          written.push(...(await writeStep(rollouts, rolloutId, deliveryStep, desired)));
      }
      return written;
    });
    await this.publish(publications);
  }

  private async publish(publications: readonly Publication[]): Promise<void> {
    await Promise.all(
      publications.map(({ deviceId, desired }) =>
        this.deps.mqtt.publishToDevice(deviceId, 'desired', desired, { retain: true }),
      ),
    );
  }
}

/**
 * Writes one step (in a transaction or not); returns the desired state to publish once written.
 * `desired` holds each device's last desired state and is kept current, so versions only go up.
 */
async function writeStep(
  rollouts: RolloutRepository,
  rolloutId: string,
  step: WriteStep,
  desired: Map<string, DesiredState>,
): Promise<Publication[]> {
  switch (step.kind) {
    case 'add-devices':
      await rollouts.insertDevices(rolloutId, step.devices);
      return [];
    case 'move-device':
      await rollouts.updateDevice(rolloutId, step.deviceId, { ...step.changes, state: step.state });
      return [];
    case 'move-wave':
      await rollouts.setWaveState(rolloutId, step.waveIndex, step.state, step.changes);
      return [];
    case 'move-rollout':
      await rollouts.setRolloutState(rolloutId, step.state, step.reason, step.at);
      return [];
    case 'log':
      await rollouts.log(rolloutId, step.message, step.at);
      return [];
    case 'send-desired': {
      const next = nextDesired(desired.get(step.deviceId) ?? null, step.deployment, step.at);
      await rollouts.saveDesired(step.deviceId, next, step.at);
      desired.set(step.deviceId, next);
      return [{ deviceId: step.deviceId, desired: next }];
    }
  }
}
