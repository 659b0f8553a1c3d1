/**
 * Decides what a rollout does next, without touching the database or the broker: each function
 * takes what the engine read (rollout, waves, device deployments, the clock) and returns the
 * steps the executor applies, in order. Every state in a step comes from the transition tables,
 * and later decisions in one plan see the earlier ones (a device that timed out is retried, then
 * counted, then notified again), exactly as if each step had been written before the next.
 */
import { DeploymentState, RolloutState, type WaveConfig, WaveState } from '../../protocol/api/rollouts.ts';
import type { DeploymentEventData, DesiredState } from '../../protocol/schemas.ts';
import { type Delivery, deploymentFromArtifact, rollbackTo } from './desired-deployment.ts';
import type { RolloutDeviceRecord, RolloutRecord, WaveRecord } from './rollout.repository.ts';
import {
  ACTIVE_DEPLOYMENT_STATES,
  DEPLOYMENT_EVENT_BY_REPORT,
  DeploymentEvent,
  RolloutEvent,
  WaveEvent,
} from './rollout-state-machine.ts';
import { type NotifyStep, Plan, type RolloutStep, type WriteStep } from './rollout-steps.ts';
import { countWave, evaluateWave, notifyBudget } from './wave-evaluator.ts';
import { waveForLateJoiner } from './wave-planner.ts';

/** The notify rate (`notifyRatePerMinute`) counts the notifies within this window. */
export const NOTIFY_RATE_WINDOW_MS = 60_000;

/**
 * How long after the server starts watching presence (at start, and when its database is back
 * after an outage) an offline or silent device still gets the benefit of the doubt at the end of
 * its soak. The server marks every device offline when it starts; a device
 * notices the lost connection within 1.5× its keepalive (30 s by default) and then reconnects after
 * its backoff (at most 60 s ± 50%), so 90 s covers both for agents with the default keepalive.
 */
export const PRESENCE_GRACE_MS = 90_000;

/**
 * The silence a soak forgives however short it is: 1.5× the agent's default heartbeat interval
 * (30 s), so a soak shorter than that does not fail a healthy agent between two heartbeats.
 */
export const HEARTBEAT_ALLOWANCE_MS = 45_000;

/** What the heartbeat check at the end of a soak needs to know about a device. */
export interface DevicePresence {
  online: boolean;
  lastSeenAt: number | null;
}

/** Everything a tick decides from, read by the engine just before. */
export interface RolloutSnapshot {
  rollout: RolloutRecord;
  waves: readonly WaveRecord[];
  devices: readonly RolloutDeviceRecord[];
  /**
   * The devices that match the target now (those already in the rollout may be left out); read
   * only when `wantsLateJoiners` says so.
   */
  targetDeviceIds?: readonly string[];
  /** Presence of the devices whose soak is over (`soaksDue`); a device missing here counts as offline. */
  presence: ReadonlyMap<string, DevicePresence>;
  /** When the server started watching presence: within `PRESENCE_GRACE_MS` of it, offline may mean "not reconnected yet". */
  presenceKnownSince: number;
}

export interface PlanClock {
  now: number;
  /** A fresh deployment id for a late joiner or a retry (the device must see a new deployment). */
  newDeploymentId: () => string;
}

/** Whether a tick needs the devices that match the target now: a running dynamic rollout with an open wave. */
export function wantsLateJoiners(rollout: RolloutRecord, waves: readonly WaveRecord[]): boolean {
  return (
    rollout.state === RolloutState.Running &&
    rollout.options.dynamic &&
    waveForLateJoiner(waves.map((wave) => wave.state)) !== null
  );
}

/** The devices whose soak is over at `now`: the tick checks their heartbeats. */
export function soaksDue(devices: readonly RolloutDeviceRecord[], now: number): string[] {
  return devices.filter((device) => soakOver(device, now)).map((device) => device.deviceId);
}

/**
 * One tick of a running or paused rollout: late joiners, per-device timeouts, soaks and retries
 * (in every wave, paused or not), then, while running, the current wave: start it or wait for
 * approval, trip it (pause or abort), finish it, finish the rollout, or notify within budget.
 */
export function planTick(snapshot: RolloutSnapshot, clock: PlanClock): RolloutStep[] {
  const plan = new Plan(clock.now);
  const rollout = { ...snapshot.rollout };
  const waves = snapshot.waves.map((wave) => ({ ...wave }));
  const devices = snapshot.devices.map((device) => ({ ...device }));
  if (wantsLateJoiners(rollout, waves) && snapshot.targetDeviceIds)
    addLateJoiners(plan, waves, devices, snapshot.targetDeviceIds, clock);

  const presenceSettled = clock.now >= snapshot.presenceKnownSince + PRESENCE_GRACE_MS;
  for (const device of devices) {
    const config = waves[device.waveIndex]?.config;
    if (config) checkDevice(plan, device, config, rollout.state, snapshot.presence, presenceSettled, clock);
  }
  const notify =
    rollout.state === RolloutState.Running ? advanceCurrentWave(plan, rollout, waves, devices) : null;
  return notify ? [...plan.steps, notify] : plan.steps;
}

/**
 * Reports from the agent on one deployment, in the order it made them: each moves the deployment
 * if the table allows it, so a late or repeated one does not. Stored reports applied again after
 * a replica died move it only by those that replica stored but never applied.
 */
export function planDeviceReports(
  device: RolloutDeviceRecord,
  reports: ReadonlyArray<{ report: DeploymentEventData; message: string | undefined }>,
  context: { now: number; soakSeconds: number },
): WriteStep[] {
  const plan = new Plan(context.now);
  const working = { ...device };
  for (const { report, message } of reports) applyReport(plan, working, report, context.soakSeconds, message);
  return plan.steps;
}

function applyReport(
  plan: Plan,
  device: RolloutDeviceRecord,
  report: DeploymentEventData,
  soakSeconds: number,
  message: string | undefined,
): void {
  const event = DEPLOYMENT_EVENT_BY_REPORT[report.state];
  plan.device(device, event, {
    ...(report.progress !== undefined ? { progress: Math.round(report.progress) } : {}),
    ...(report.transfer
      ? {
          transferMode: report.transfer.mode,
          transferBytes: report.transfer.bytes,
          artifactBytes: report.transfer.artifactBytes,
        }
      : {}),
    ...(message ? { reason: message } : {}),
    ...(event === DeploymentEvent.Installed ? { soakUntil: plan.now + soakSeconds * 1000 } : {}),
  });
}

/** A device that goes offline while soaking has failed its soak. */
export function planOffline(device: RolloutDeviceRecord, now: number): WriteStep[] {
  const plan = new Plan(now);
  if (device.state === DeploymentState.Soaking)
    plan.device({ ...device }, DeploymentEvent.Fail, { reason: 'went offline during the soak' });
  return plan.steps;
}

/** Notifying one device: it is sent its artifact, or fails at once when it cannot get one. */
export function planDelivery(
  device: RolloutDeviceRecord,
  delivery: Delivery,
  previousDeployment: DesiredState['deployment'],
  now: number,
): WriteStep[] {
  const plan = new Plan(now);
  const working = { ...device };
  if ('failure' in delivery) {
    plan.device(working, DeploymentEvent.Notify);
    plan.device(working, DeploymentEvent.Fail, { reason: delivery.failure });
    return plan.steps;
  }
  const notified = plan.device(working, DeploymentEvent.Notify, {
    notifiedAt: now,
    artifactId: delivery.artifact.id,
    partArtifactIds: delivery.parts.map((part) => part.id),
    previousDeployment,
    progress: 0,
    transferMode: null,
    transferBytes: null,
    artifactBytes: null,
  });
  if (notified)
    plan.sendDesired(
      device.deviceId,
      deploymentFromArtifact(delivery.artifact, device.deploymentId, delivery.parts),
    );
  return plan.steps;
}

// Operator actions: each plans nothing when the tables refuse it.

export function planPause(rollout: RolloutRecord, by: string, now: number): WriteStep[] {
  const plan = new Plan(now);
  plan.rollout({ ...rollout }, RolloutEvent.Pause, `paused by ${by}`, `paused by ${by}`);
  return plan.steps;
}

/** Resuming also resumes the tripped waves; their failed devices stay failed (unless they have retries left). */
export function planResume(
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  by: string,
  now: number,
): WriteStep[] {
  const plan = new Plan(now);
  if (plan.rollout({ ...rollout }, RolloutEvent.Resume, null, `resumed by ${by}`)) {
    for (const wave of waves) if (wave.state === WaveState.Tripped) plan.wave({ ...wave }, WaveEvent.Resume);
  }
  return plan.steps;
}

export function planApprove(waves: readonly WaveRecord[], by: string, now: number): WriteStep[] {
  const plan = new Plan(now);
  const waiting = waves.find((wave) => wave.state === WaveState.AwaitingApproval);
  if (waiting && plan.wave({ ...waiting }, WaveEvent.Approve, { startedAt: now }))
    plan.log(`${waveLabel(waiting.name)} approved by ${by}`);
  return plan.steps;
}

export function planAbort(
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  devices: readonly RolloutDeviceRecord[],
  reason: string,
  now: number,
): WriteStep[] {
  const plan = new Plan(now);
  abort(
    plan,
    { ...rollout },
    waves.map((wave) => ({ ...wave })),
    devices.map((device) => ({ ...device })),
    reason,
  );
  return plan.steps;
}

/** A new device deployment, queued in its wave. */
export function newRolloutDevice(
  deviceId: string,
  waveIndex: number,
  now: number,
  deploymentId: string,
): RolloutDeviceRecord {
  return {
    deviceId,
    waveIndex,
    deploymentId,
    state: DeploymentState.Queued,
    attempt: 1,
    artifactId: null,
    partArtifactIds: [],
    previousDeployment: null,
    progress: null,
    transferMode: null,
    transferBytes: null,
    artifactBytes: null,
    reason: null,
    notifiedAt: null,
    soakUntil: null,
    stateChangedAt: now,
  };
}

/** "wave 1" for the default names, "wave canary" for a named one: never "wave wave 1". */
function waveLabel(name: string): string {
  return /^wave\b/i.test(name) ? name : `wave ${name}`;
}

/** A finished soak passed, failed (and why), or cannot be judged yet (its device may still be reconnecting). */
type SoakVerdict = 'passed' | 'not-yet' | { failed: string };

function judgeSoak(
  presence: DevicePresence | undefined,
  soakSeconds: number,
  presenceSettled: boolean,
  now: number,
): SoakVerdict {
  if (!presence?.online) return presenceSettled ? { failed: 'offline at the end of the soak' } : 'not-yet';
  const quietFor = now - (presence.lastSeenAt ?? 0);
  // A heartbeat is due at least every soak period, or every agent heartbeat interval when the soak
  // is shorter; a device that stayed silent is not healthy, unless the server could not store its
  // heartbeats (it was down, or its database was).
  if (soakSeconds > 0 && quietFor > Math.max(soakSeconds * 1000, HEARTBEAT_ALLOWANCE_MS))
    return presenceSettled
      ? { failed: `no heartbeat for ${Math.round(quietFor / 1000)} s during the soak` }
      : 'not-yet';
  return 'passed';
}

function soakOver(device: RolloutDeviceRecord, now: number): boolean {
  return device.state === DeploymentState.Soaking && device.soakUntil !== null && now >= device.soakUntil;
}

/** Timeouts, soaks and retries apply to every wave's devices, paused or not; retries only while running. */
function checkDevice(
  plan: Plan,
  device: RolloutDeviceRecord,
  config: WaveConfig,
  rolloutState: RolloutState,
  presence: RolloutSnapshot['presence'],
  presenceSettled: boolean,
  clock: PlanClock,
): void {
  const { now } = clock;
  if (
    ACTIVE_DEPLOYMENT_STATES.includes(device.state) &&
    device.state !== DeploymentState.Soaking &&
    device.notifiedAt !== null &&
    now - device.notifiedAt > config.deviceTimeoutSeconds * 1000
  ) {
    plan.device(device, DeploymentEvent.Fail, {
      reason: `no result within ${config.deviceTimeoutSeconds} s`,
    });
  } else if (soakOver(device, now)) {
    const verdict = judgeSoak(presence.get(device.deviceId), config.soakSeconds, presenceSettled, now);
    if (verdict === 'passed') plan.device(device, DeploymentEvent.SoakPassed, { progress: 100 });
    else if (verdict !== 'not-yet') plan.device(device, DeploymentEvent.Fail, { reason: verdict.failed });
  }
  if (
    device.state === DeploymentState.Failed &&
    device.attempt <= config.retries &&
    rolloutState === RolloutState.Running
  ) {
    plan.device(device, DeploymentEvent.Retry, {
      attempt: device.attempt + 1,
      deploymentId: clock.newDeploymentId(),
      progress: null,
      notifiedAt: null,
    });
  }
}

/** Devices that started matching the target join the last wave not yet finished. */
function addLateJoiners(
  plan: Plan,
  waves: readonly WaveRecord[],
  devices: RolloutDeviceRecord[],
  targetDeviceIds: readonly string[],
  clock: PlanClock,
): void {
  const waveIndex = waveForLateJoiner(waves.map((wave) => wave.state));
  if (waveIndex === null) return;
  const known = new Set(devices.map((device) => device.deviceId));
  const joiners = targetDeviceIds
    .filter((deviceId) => !known.has(deviceId))
    .map((deviceId) => newRolloutDevice(deviceId, waveIndex, plan.now, clock.newDeploymentId()));
  if (joiners.length === 0) return;
  plan.addDevices(joiners);
  plan.log(
    `${joiners.length} device(s) joined wave ${waves[waveIndex]?.name}: ${joiners.map((device) => device.deviceId).join(', ')}`,
  );
  devices.push(...joiners);
}

function advanceCurrentWave(
  plan: Plan,
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  devices: readonly RolloutDeviceRecord[],
): NotifyStep | null {
  const { now } = plan;
  const current = waves.find((wave) => wave.state !== WaveState.Succeeded);
  if (!current) {
    plan.rollout(rollout, RolloutEvent.AllWavesSucceeded, null, 'all waves succeeded');
    return null;
  }
  if (current.state === WaveState.Pending) {
    if (current.config.requiresApproval) {
      plan.wave(current, WaveEvent.AwaitApproval);
      plan.log(`${waveLabel(current.name)} awaits approval`);
    } else {
      plan.wave(current, WaveEvent.Start, { startedAt: now });
      plan.log(`${waveLabel(current.name)} started`);
    }
  }
  if (current.state !== WaveState.Running) return null;

  const members = devices.filter((device) => device.waveIndex === current.index);
  const counts = countWave(members.map((device) => device.state));
  const verdict = evaluateWave(counts, current.config);
  if (verdict === 'tripped') {
    plan.wave(current, WaveEvent.ErrorThresholdCrossed, { finishedAt: now });
    const reason = `${waveLabel(current.name)} tripped: ${counts.failed} of ${counts.size} failed (threshold ${current.config.errorThresholdPercent}%)`;
    plan.log(reason);
    if (rollout.options.onTrip === 'abort') abort(plan, rollout, waves, devices, reason);
    else plan.rollout(rollout, RolloutEvent.WaveTripped, reason, `rollout paused: ${reason}`);
    return null;
  }
  if (verdict === 'succeeded') {
    plan.wave(current, WaveEvent.SuccessThresholdReached, { finishedAt: now });
    const failed = counts.failed > 0 ? `, ${counts.failed} failed within the error threshold` : '';
    plan.log(
      `${waveLabel(current.name)} succeeded: ${counts.committed} of ${counts.size} committed${failed}`,
    );
    return null;
  }

  // Counted from what is stored, so every replica sees the same budget. A retried device's
  // earlier notify is forgotten (its notifiedAt starts again), which lets a retry through the rate.
  const notifiedInLastMinute = members.filter(
    (device) => device.notifiedAt !== null && now - device.notifiedAt < NOTIFY_RATE_WINDOW_MS,
  ).length;
  const budget = notifyBudget({
    queued: counts.queued,
    inProgress: counts.inProgress,
    maxParallel: current.config.maxParallel,
    notifyRatePerMinute: current.config.notifyRatePerMinute,
    notifiedInLastMinute,
  });
  const batch = members.filter((device) => device.state === DeploymentState.Queued).slice(0, budget);
  if (batch.length === 0) return null;
  return {
    kind: 'notify',
    waveIndex: current.index,
    releaseId: rollout.releaseId,
    devices: batch.map((device) => ({ ...device })),
    at: now,
  };
}

/**
 * Aborting stops the rollout: its unfinished waves read "aborted", queued devices never start,
 * devices mid-update are sent back to what they ran before, and with `rollbackOnAbort` so is
 * every device the rollout already moved. Only a device that is sent an earlier deployment reads
 * "rolled-back": one that ran none before this rollout cannot be, so a committed one stays
 * committed, a failed one failed, and one mid-update fails (its agent finishes the update).
 */
function abort(
  plan: Plan,
  rollout: RolloutRecord,
  waves: readonly WaveRecord[],
  devices: readonly RolloutDeviceRecord[],
  reason: string,
): void {
  if (!plan.rollout(rollout, RolloutEvent.Abort, reason, `rollout aborted: ${reason}`)) return;
  for (const wave of waves) plan.wave(wave, WaveEvent.Abort, { finishedAt: plan.now });
  let stayed = 0;
  for (const device of devices) {
    const midUpdate = ACTIVE_DEPLOYMENT_STATES.includes(device.state);
    const moved = device.state === DeploymentState.Committed || device.state === DeploymentState.Failed;
    if (!midUpdate && !(moved && rollout.options.rollbackOnAbort)) continue;
    const previous = device.previousDeployment;
    if (previous) {
      if (plan.device(device, DeploymentEvent.Abort, { reason: device.reason ?? `rolled back: ${reason}` }))
        plan.sendDesired(device.deviceId, rollbackTo(rollout.id, previous));
    } else if (midUpdate) {
      plan.device(device, DeploymentEvent.Fail, {
        reason: `rollout aborted during the update (${reason}); no earlier deployment to go back to`,
      });
    } else if (device.state === DeploymentState.Committed) {
      stayed++;
    }
  }
  if (stayed > 0)
    plan.log(`${stayed} device(s) keep this release: they ran no earlier deployment to go back to`);
}
