/**
 * Where webhook events come from: the ingest's presence changes and stored heartbeats, and the
 * steps the rollout engine applied. The mapping from what happened to the events is pure; the
 * watcher only listens and reads what the mapping needs.
 */
import type { Logger } from 'pino';
import { DeploymentState, RolloutState, WaveState } from '../../protocol/api/rollouts.ts';
import type { Presence } from '../../protocol/schemas.ts';
import type { RolloutEngine } from '../rollouts/rollout-engine.ts';
import type { RolloutRepository } from '../rollouts/rollout.repository.ts';
import { DeploymentEvent, WaveEvent } from '../rollouts/rollout-state-machine.ts';
import type { RolloutStep } from '../rollouts/rollout-steps.ts';
import { healthProblem } from '../telemetry/health-problem.ts';
import type { HealthToStore, TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import type { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import type { FleetEvent } from './webhook-events.ts';

const ROLLOUT_ENDINGS: Partial<
  Record<RolloutState, 'rollout.paused' | 'rollout.completed' | 'rollout.aborted'>
> = {
  [RolloutState.Paused]: 'rollout.paused',
  [RolloutState.Completed]: 'rollout.completed',
  [RolloutState.Aborted]: 'rollout.aborted',
};

/** A device connected or went away; keyed by the presence message's own time, unique per change. */
export function presenceEvent(deviceId: string, presence: Presence, now: number): FleetEvent {
  const type = presence.state === 'online' ? 'device.online' : 'device.offline';
  return {
    type,
    key: `${type}:${deviceId}:${presence.at}`,
    at: now,
    data: { deviceId, reason: presence.reason },
  };
}

type MoveWave = Extract<RolloutStep, { kind: 'move-wave' }>;
type MoveDevice = Extract<RolloutStep, { kind: 'move-device' }>;

/** A rollout's first tick starts its first wave (or has it await approval): the rollout is under way. */
const startsFirstWave = (step: MoveWave) =>
  step.waveIndex === 0 && (step.event === WaveEvent.Start || step.event === WaveEvent.AwaitApproval);

/** The device failed or rolled itself back; a rollback an abort ordered is not the device's failure. */
const deploymentFailed = (step: MoveDevice) =>
  step.state === DeploymentState.Failed ||
  (step.state === DeploymentState.RolledBack && step.event === DeploymentEvent.RolledBack);

/** Whether a step makes an event (most are progress: the rollout need not be read for them). */
export function announcesEvent(step: RolloutStep): boolean {
  if (step.kind === 'move-rollout') return ROLLOUT_ENDINGS[step.state] !== undefined;
  if (step.kind === 'move-wave') return startsFirstWave(step) || step.state === WaveState.Tripped;
  if (step.kind === 'move-device') return deploymentFailed(step);
  return false;
}

/**
 * The events in the steps the engine applied to a rollout: its creation (its first wave starts or
 * awaits approval), a pause, completion or abort, a tripped wave, and each device deployment that
 * failed or that the device rolled back (not those an abort sent back: that is the abort's event).
 */
export function rolloutEvents(
  rollout: { id: string; releaseId: string; createdAt: number },
  steps: readonly RolloutStep[],
): FleetEvent[] {
  const ids = { rolloutId: rollout.id, releaseId: rollout.releaseId };
  const reasonOfRollout = steps.find((step) => step.kind === 'move-rollout')?.reason ?? null;
  return steps.flatMap((step): FleetEvent[] => {
    switch (step.kind) {
      case 'move-rollout': {
        const type = ROLLOUT_ENDINGS[step.state];
        if (!type) return [];
        return [
          {
            type,
            key: `${type}:${rollout.id}:${step.at}`,
            at: step.at,
            data: { ...ids, reason: step.reason },
          },
        ];
      }
      case 'move-wave': {
        if (startsFirstWave(step))
          return [
            {
              type: 'rollout.created',
              key: `rollout.created:${rollout.id}`,
              at: rollout.createdAt,
              data: ids,
            },
          ];
        if (step.state !== WaveState.Tripped) return [];
        const at = step.changes.finishedAt ?? rollout.createdAt;
        return [
          {
            type: 'wave.tripped',
            key: `wave.tripped:${rollout.id}:${step.waveIndex}:${at}`,
            at,
            data: { ...ids, waveIndex: step.waveIndex, reason: reasonOfRollout },
          },
        ];
      }
      case 'move-device': {
        if (!deploymentFailed(step) || step.changes.stateChangedAt === undefined) return [];
        const at = step.changes.stateChangedAt;
        return [
          {
            type: 'deployment.failed',
            key: `deployment.failed:${rollout.id}:${step.deviceId}:${at}`,
            at,
            data: {
              ...ids,
              deviceId: step.deviceId,
              state: step.state,
              reason: step.changes.reason ?? null,
            },
          },
        ];
      }
      default:
        return [];
    }
  });
}

/**
 * Heartbeats that show a problem the device's previous one did not (or that are its first):
 * the previous is read from the stored samples, so it is right whichever replica stored it.
 */
export async function healthProblemEvents(
  samples: readonly HealthToStore[],
  previousSample: (deviceId: string, before: number) => Promise<HealthToStore['health'] | null>,
): Promise<FleetEvent[]> {
  const events: FleetEvent[] = [];
  const latestByDevice = new Map<string, HealthToStore>();
  for (const sample of samples) latestByDevice.set(sample.deviceId, sample);
  for (const { deviceId, health, receivedAt } of latestByDevice.values()) {
    const problem = healthProblem(health);
    if (problem === null) continue;
    const previous = await previousSample(deviceId, health.at);
    if (previous && healthProblem(previous) !== null) continue;
    events.push({
      type: 'device.health-problem',
      key: `device.health-problem:${deviceId}:${health.at}`,
      at: receivedAt,
      data: { deviceId, problem },
    });
  }
  return events;
}

export interface FleetEventSources {
  ingest: TelemetryIngestService;
  engine: RolloutEngine;
  rollouts: Pick<RolloutRepository, 'getRollout'>;
  telemetry: Pick<TelemetryRepository, 'healthBefore'>;
  now: () => number;
  logger: Logger;
}

/**
 * Listens to the ingest and the engine and publishes their events; returns how to stop. Reads
 * happen after the listeners returned, so neither the ingest nor the engine waits on them.
 */
export function watchFleetEvents(
  sources: FleetEventSources,
  publish: (event: FleetEvent) => void,
): () => void {
  const { ingest, engine, logger } = sources;
  const failed = (what: string) => (error: unknown) =>
    logger.error({ err: error }, `webhook events of ${what} lost`);
  // Heartbeat batches are checked one after another: a slow database holds one check, not many.
  let healthChecks: Promise<void> = Promise.resolve();
  const onPresence = (deviceId: string, _online: boolean, presence: Presence) =>
    publish(presenceEvent(deviceId, presence, sources.now()));
  const onHealth = (samples: HealthToStore[]) => {
    if (!samples.some((sample) => healthProblem(sample.health) !== null)) return;
    healthChecks = healthChecks
      .then(() =>
        healthProblemEvents(samples, (deviceId, before) => sources.telemetry.healthBefore(deviceId, before)),
      )
      .then((events) => events.forEach(publish))
      .catch(failed('heartbeats'));
  };
  const onSteps = (rolloutId: string, steps: readonly RolloutStep[]) => {
    if (!steps.some(announcesEvent)) return;
    void sources.rollouts
      .getRollout(rolloutId)
      .then((rollout) => (rollout ? rolloutEvents(rollout, steps).forEach(publish) : undefined))
      .catch(failed(`rollout ${rolloutId}`));
  };
  ingest.on('presence-changed', onPresence);
  ingest.on('health-stored', onHealth);
  engine.on('steps-applied', onSteps);
  return () => {
    ingest.off('presence-changed', onPresence);
    ingest.off('health-stored', onHealth);
    engine.off('steps-applied', onSteps);
  };
}
