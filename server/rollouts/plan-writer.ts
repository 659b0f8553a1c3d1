import type { DesiredConfig } from '../../protocol/device-config.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { nextDesired } from './desired-deployment.ts';
import type { RolloutRepository } from './rollout.repository.ts';
import type { RolloutDeviceChanges } from './rollout-device-updates.ts';
import type { WriteStep } from './rollout-steps.ts';

/** A desired state written, to be published once the plan's transaction committed. */
export type Publication = { deviceId: string; desired: DesiredState };

/**
 * Writes a plan's steps in its transaction, in order, but gathers the per-device ones (device
 * moves, desired states) and writes them together before the next step of another kind: a wave
 * of thousands of devices costs a few statements. A device moved twice is written once with both
 * changes; one sent two desired states keeps and publishes the last (the agent takes only the
 * newest version anyway).
 */
export class PlanWriter {
  private readonly moves = new Map<string, RolloutDeviceChanges>();
  private readonly unsaved = new Map<string, DesiredState>();
  private readonly toPublish = new Map<string, DesiredState>();
  /** When the gathered desired states were decided (a plan's steps share their time). */
  private decidedAt = 0;

  /**
   * `desired` holds each device's last desired state and is kept current, so versions only go up.
   * `configs` is the config of the devices the plan sends a desired state, resolved before the
   * transaction (a device missing has no variable); without it each keeps the config it had.
   */
  constructor(
    private readonly rollouts: RolloutRepository,
    private readonly rolloutId: string,
    private readonly desired: Map<string, DesiredState>,
    private readonly configs: ReadonlyMap<string, DesiredConfig> | null = null,
  ) {}

  async write(step: WriteStep): Promise<void> {
    switch (step.kind) {
      case 'move-device':
        this.moves.set(step.deviceId, {
          ...this.moves.get(step.deviceId),
          ...step.changes,
          state: step.state,
        });
        return;
      case 'send-desired': {
        const previous = this.desired.get(step.deviceId) ?? null;
        const config = this.configs ? this.configs.get(step.deviceId) : previous?.config;
        const next = nextDesired(previous, step.deployment, step.at, config);
        this.desired.set(step.deviceId, next);
        this.unsaved.set(step.deviceId, next);
        this.toPublish.set(step.deviceId, next);
        this.decidedAt = step.at;
        return;
      }
    }
    await this.flush();
    switch (step.kind) {
      case 'add-devices':
        return this.rollouts.insertDevices(this.rolloutId, step.devices);
      case 'move-wave':
        return this.rollouts.setWaveState(this.rolloutId, step.waveIndex, step.state, step.changes);
      case 'move-rollout':
        return this.rollouts.setRolloutState(this.rolloutId, step.state, step.reason, step.at);
      case 'log':
        return this.rollouts.log(this.rolloutId, step.message, step.at);
    }
  }

  /** Writes what is gathered; returns the desired states to publish after the commit. */
  async finish(): Promise<Publication[]> {
    await this.flush();
    return [...this.toPublish].map(([deviceId, desired]) => ({ deviceId, desired }));
  }

  private async flush(): Promise<void> {
    if (this.moves.size > 0) {
      await this.rollouts.updateDevices(
        this.rolloutId,
        [...this.moves].map(([deviceId, changes]) => ({ deviceId, changes })),
      );
      this.moves.clear();
    }
    if (this.unsaved.size > 0) {
      await this.rollouts.saveDesiredStates(
        [...this.unsaved].map(([deviceId, desired]) => ({ deviceId, desired })),
        this.decidedAt,
      );
      this.unsaved.clear();
    }
  }
}
