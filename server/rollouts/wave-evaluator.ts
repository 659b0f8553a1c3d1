import { DeploymentState } from '../../protocol/api/rollouts.ts';
import { FAILED_DEPLOYMENT_STATES } from './rollout-state-machine.ts';

export interface WaveThresholds {
  /** % of the wave that must be committed before the next wave starts (hawkBit's success condition). */
  successThresholdPercent: number;
  /** % of the wave failed (or rolled back) above which the wave trips (hawkBit's error condition). */
  errorThresholdPercent: number;
}

export type WaveVerdict = 'continue' | 'succeeded' | 'tripped';

export interface WaveCounts {
  size: number;
  committed: number;
  /** Every failed device, rolled back or not. */
  failed: number;
  inProgress: number;
  queued: number;
  /** The failed devices that were rolled back (counted in `failed` as well). */
  rolledBack: number;
}

/** A wave's devices counted by state: each entry is one device, or `count` devices (a SQL group). */
export function countWave(
  states: ReadonlyArray<DeploymentState | { state: DeploymentState; count: number }>,
): WaveCounts {
  const counts: WaveCounts = { size: 0, committed: 0, failed: 0, inProgress: 0, queued: 0, rolledBack: 0 };
  for (const entry of states) {
    const { state, count } = typeof entry === 'string' ? { state: entry, count: 1 } : entry;
    counts.size += count;
    if (state === DeploymentState.Committed) counts.committed += count;
    else if (FAILED_DEPLOYMENT_STATES.includes(state)) counts.failed += count;
    else if (state === DeploymentState.Queued) counts.queued += count;
    else counts.inProgress += count;
    if (state === DeploymentState.RolledBack) counts.rolledBack += count;
  }
  return counts;
}

/**
 * A wave trips as soon as failures cross the error threshold (errors ÷ size > threshold), and
 * succeeds once committed ÷ size reaches the success threshold, or once every device has finished
 * (committed or failed) within the error threshold: the failures were within what the operator
 * allowed, and nothing can raise the count any more. Tripping is checked first: a wave that is
 * both over its error budget and at its success line has still gone bad.
 */
export function evaluateWave(counts: WaveCounts, thresholds: WaveThresholds): WaveVerdict {
  if (counts.size === 0) return 'succeeded';
  if ((counts.failed / counts.size) * 100 > thresholds.errorThresholdPercent) return 'tripped';
  if ((counts.committed / counts.size) * 100 >= thresholds.successThresholdPercent) return 'succeeded';
  if (counts.queued === 0 && counts.inProgress === 0) return 'succeeded';
  return 'continue';
}

/**
 * How many queued devices may be notified now: no more than `maxParallel` at work at once, and
 * no faster than `notifyRatePerMinute` (a token bucket refilled by the time since the last notify).
 */
export function notifyBudget(options: {
  queued: number;
  inProgress: number;
  maxParallel: number;
  notifyRatePerMinute: number | null;
  notifiedInLastMinute: number;
}): number {
  const byParallel = Math.max(0, options.maxParallel - options.inProgress);
  const byRate =
    options.notifyRatePerMinute === null
      ? Number.POSITIVE_INFINITY
      : Math.max(0, options.notifyRatePerMinute - options.notifiedInLastMinute);
  return Math.min(options.queued, byParallel, byRate);
}
