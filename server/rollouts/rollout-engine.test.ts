import { describe, expect, it } from 'vitest';
import { DeploymentState, RolloutState } from '../../protocol/api/rollouts.ts';
import {
  DEPLOYMENT_TRANSITIONS,
  DeploymentEvent,
  nextState,
  ROLLOUT_TRANSITIONS,
  RolloutEvent,
} from './rollout-state-machine.ts';
import type { RolloutDeviceRecord } from './rollout.repository.ts';
import { NOTIFY_PART_SIZE, type NotifyStep, type RolloutStep, transactionParts } from './rollout-steps.ts';
import { countWave, evaluateWave, notifyBudget } from './wave-evaluator.ts';
import { planWaves, waveForLateJoiner } from './wave-planner.ts';

const devices = (n: number) => Array.from({ length: n }, (_, i) => `dev-${String(i).padStart(3, '0')}`);

describe('wave planner', () => {
  it('splits cumulative percentages so every device lands in exactly one wave', () => {
    const plan = planWaves(devices(200), [
      { percent: 1 },
      { percent: 10 },
      { percent: 50 },
      { percent: 100 },
    ]);
    expect(plan.map((wave) => wave.length)).toEqual([2, 18, 80, 100]);
    expect(new Set(plan.flat()).size).toBe(200);
  });

  it('puts explicit canaries first and never gives a small fleet an empty first wave', () => {
    const plan = planWaves(devices(3), [{ canary: ['dev-002'] }, { percent: 1 }, { percent: 100 }]);
    expect(plan).toEqual([['dev-002'], ['dev-000'], ['dev-001']]);
  });

  it('ignores canaries outside the target and duplicates', () => {
    expect(planWaves(['a', 'b', 'b'], [{ canary: ['z', 'a'] }, { percent: 100 }])).toEqual([['a'], ['b']]);
  });

  it('sends a late-joining device to the last wave not yet finished', () => {
    expect(waveForLateJoiner(['succeeded', 'running', 'pending'])).toBe(2);
    expect(waveForLateJoiner(['succeeded', 'running', 'succeeded'])).toBe(1);
    expect(waveForLateJoiner(['succeeded', 'tripped'])).toBeNull();
  });
});

describe('wave evaluation', () => {
  const S = DeploymentState;
  it.each([
    { states: [S.Committed, S.Committed, S.Soaking], success: 100, error: 10, verdict: 'continue' },
    { states: [S.Committed, S.Committed, S.Committed], success: 100, error: 10, verdict: 'succeeded' },
    { states: [S.Committed, S.Committed, S.Queued, S.Queued], success: 50, error: 10, verdict: 'succeeded' },
    { states: [S.Committed, S.Failed, S.Committed, S.Committed], success: 75, error: 20, verdict: 'tripped' },
    {
      states: [S.Committed, S.Failed, S.Committed, S.Committed, S.Committed],
      success: 80,
      error: 20,
      verdict: 'succeeded',
    },
    { states: [S.RolledBack, S.Notified], success: 100, error: 0, verdict: 'tripped' },
  ])(
    '$states with success ≥ $success% and error > $error% → $verdict',
    ({ states, success, error, verdict }) => {
      expect(
        evaluateWave(countWave(states), { successThresholdPercent: success, errorThresholdPercent: error }),
      ).toBe(verdict);
    },
  );

  it('notifies within both the parallel limit and the rate limit', () => {
    expect(
      notifyBudget({
        queued: 100,
        inProgress: 8,
        maxParallel: 10,
        notifyRatePerMinute: null,
        notifiedInLastMinute: 0,
      }),
    ).toBe(2);
    expect(
      notifyBudget({
        queued: 100,
        inProgress: 0,
        maxParallel: 50,
        notifyRatePerMinute: 30,
        notifiedInLastMinute: 25,
      }),
    ).toBe(5);
    expect(
      notifyBudget({
        queued: 3,
        inProgress: 0,
        maxParallel: 50,
        notifyRatePerMinute: 30,
        notifiedInLastMinute: 0,
      }),
    ).toBe(3);
  });
});

describe('state machines', () => {
  it.each([
    [DeploymentState.Queued, DeploymentEvent.Notify, DeploymentState.Notified],
    [DeploymentState.Notified, DeploymentEvent.DownloadStarted, DeploymentState.Downloading],
    [DeploymentState.Installing, DeploymentEvent.RebootPending, DeploymentState.AwaitingReboot],
    [DeploymentState.AwaitingReboot, DeploymentEvent.Installed, DeploymentState.Soaking],
    [DeploymentState.Soaking, DeploymentEvent.Fail, DeploymentState.Failed],
    [DeploymentState.Soaking, DeploymentEvent.SoakPassed, DeploymentState.Committed],
    [DeploymentState.Failed, DeploymentEvent.Retry, DeploymentState.Queued],
  ])('moves a deployment from %s on %s to %s', (from, event, to) => {
    expect(nextState(DEPLOYMENT_TRANSITIONS, from, event)).toBe(to);
  });

  it.each([
    [DeploymentState.Committed, DeploymentEvent.DownloadStarted],
    [DeploymentState.Soaking, DeploymentEvent.DownloadStarted],
    [DeploymentState.Queued, DeploymentEvent.Installed],
    [DeploymentState.Committed, DeploymentEvent.Fail],
  ])('ignores a late or repeated report: %s on %s', (from, event) => {
    expect(nextState(DEPLOYMENT_TRANSITIONS, from, event)).toBeNull();
  });

  it('pauses a running rollout when a wave trips, and never leaves a finished one', () => {
    expect(nextState(ROLLOUT_TRANSITIONS, RolloutState.Running, RolloutEvent.WaveTripped)).toBe(
      RolloutState.Paused,
    );
    expect(nextState(ROLLOUT_TRANSITIONS, RolloutState.Aborted, RolloutEvent.Resume)).toBeNull();
    expect(nextState(ROLLOUT_TRANSITIONS, RolloutState.Completed, RolloutEvent.Abort)).toBeNull();
  });
});

describe('transaction parts', () => {
  const notify = (count: number): NotifyStep => ({
    kind: 'notify',
    waveIndex: 2,
    releaseId: 'rel-1',
    devices: devices(count).map((deviceId) => ({ deviceId }) as RolloutDeviceRecord),
    at: 1,
  });
  const log = (message: string): RolloutStep => ({ kind: 'log', message, at: 1 });

  it('keeps a small plan in one transaction', () => {
    const steps = [log('wave 3 started'), notify(10)];
    expect(transactionParts(steps)).toEqual([steps]);
  });

  it('notifies a large wave in parts, the steps before it with the first, each device once', () => {
    const parts = transactionParts([log('wave 3 started'), notify(NOTIFY_PART_SIZE * 2 + 1), log('after')]);
    expect(
      parts.map((part) => part.map((step) => (step.kind === 'notify' ? step.devices.length : step.kind))),
    ).toEqual([['log', NOTIFY_PART_SIZE], [NOTIFY_PART_SIZE], [1, 'log']]);
    const notified = parts.flat().flatMap((step) => (step.kind === 'notify' ? step.devices : []));
    expect(new Set(notified.map((device) => device.deviceId)).size).toBe(NOTIFY_PART_SIZE * 2 + 1);
  });

  it('has no empty transaction for a plan without steps', () => {
    expect(transactionParts([])).toEqual([]);
  });
});
