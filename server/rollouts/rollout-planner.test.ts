import { describe, expect, it } from 'vitest';
import {
  DeploymentState as D,
  RolloutState,
  type RolloutOptions,
  type WaveConfig,
  waveConfigSchema,
  WaveState as W,
} from '../../protocol/api/rollouts.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { RolloutDeviceRecord, RolloutRecord, WaveRecord } from './rollout.repository.ts';
import {
  type DevicePresence,
  newRolloutDevice,
  planAbort,
  planApprove,
  planDelivery,
  planDeviceReports,
  planOffline,
  planPause,
  planResume,
  planTick,
  PRESENCE_GRACE_MS,
  soaksDue,
  wantsLateJoiners,
} from './rollout-planner.ts';
import type { RolloutStep } from './rollout-steps.ts';

const NOW = 1_000_000_000;
const SECOND = 1000;
const previousDeployment: DesiredState['deployment'] = {
  id: 'dep-old',
  strategy: 'app-bundle',
  artifact: 'app',
  version: '0.9.0',
  sha256: 'a'.repeat(64),
  size: 1,
  url: '/api/v1/artifacts/old/content',
  manifest: '{}',
  signature: 'sig',
  rollbackOrder: null,
};

function rollout(
  overrides: Omit<Partial<RolloutRecord>, 'options'> & { options?: Partial<RolloutOptions> } = {},
): RolloutRecord {
  const { options, ...rest } = overrides;
  return {
    id: 'ro-1',
    name: 'r',
    releaseId: 'rel-1',
    target: { tags: ['fleet'] },
    options: { onTrip: 'pause', rollbackOnAbort: false, dynamic: false, ...options },
    state: RolloutState.Running,
    reason: null,
    createdAt: 0,
    updatedAt: 0,
    ...rest,
  };
}

/** A wave with the API's defaults for anything not given (soak 60 s unless said otherwise). */
function wave(index: number, state: W, config: Partial<WaveConfig> = {}): WaveRecord {
  return {
    index,
    name: `wave ${index + 1}`,
    config: waveConfigSchema.parse(config),
    state,
    startedAt: null,
    finishedAt: null,
  };
}

function device(
  deviceId: string,
  state: D,
  overrides: Partial<RolloutDeviceRecord> = {},
): RolloutDeviceRecord {
  return { ...newRolloutDevice(deviceId, 0, 0, `dep-${deviceId}`), state, ...overrides };
}

const soaked = (deviceId: string, overrides: Partial<RolloutDeviceRecord> = {}) =>
  device(deviceId, D.Soaking, { notifiedAt: NOW - 90 * SECOND, soakUntil: NOW, ...overrides });
const heartbeat: DevicePresence = { online: true, lastSeenAt: NOW - 2 * SECOND };

/** One line per step, so a table row reads like what the rollout does. */
function describeSteps(steps: readonly RolloutStep[]): string[] {
  return steps.map((step) => {
    switch (step.kind) {
      case 'add-devices':
        return `add ${step.devices.map((d) => `${d.deviceId}@${d.waveIndex}`).join(' ')}`;
      case 'move-device':
        return `${step.deviceId} ${step.state}${step.changes.reason ? ` (${step.changes.reason})` : ''}`;
      case 'move-wave':
        return `wave ${step.waveIndex + 1} ${step.state}`;
      case 'move-rollout':
        return `rollout ${step.state}`;
      case 'log':
        return `log: ${step.message}`;
      case 'notify':
        return `notify ${step.devices.map((d) => d.deviceId).join(' ')}`;
      case 'send-desired':
        return `send ${step.deviceId} ${step.deployment ? `${step.deployment.id}${step.deployment.rollbackOrder ? ' rollback' : ''}` : 'nothing'}`;
    }
  });
}

interface TickRow {
  name: string;
  rollout?: RolloutRecord;
  waves: WaveRecord[];
  devices: RolloutDeviceRecord[];
  target?: string[];
  presence?: Record<string, DevicePresence>;
  /** When the server started watching presence; by default long enough ago for the grace to be over. */
  presenceKnownSince?: number;
  steps: string[];
}

function tick(row: Omit<TickRow, 'name' | 'steps'>): RolloutStep[] {
  let ids = 0;
  return planTick(
    {
      rollout: row.rollout ?? rollout(),
      waves: row.waves,
      devices: row.devices,
      ...(row.target ? { targetDeviceIds: row.target } : {}),
      presence: new Map(Object.entries(row.presence ?? {})),
      presenceKnownSince: row.presenceKnownSince ?? NOW - 3600 * SECOND,
    },
    { now: NOW, newDeploymentId: () => `dep-new-${++ids}` },
  );
}

describe('rollout planner: one tick', () => {
  it.each<TickRow>([
    // The normal path.
    {
      name: 'starts the first pending wave and notifies up to maxParallel',
      waves: [wave(0, W.Pending, { maxParallel: 2 }), wave(1, W.Pending)],
      devices: [device('a', D.Queued), device('b', D.Queued), device('c', D.Queued)],
      steps: ['wave 1 running', 'log: wave 1 started', 'notify a b'],
    },
    {
      name: 'notifies only as many as are not already at work',
      waves: [wave(0, W.Running, { maxParallel: 2 })],
      devices: [
        device('a', D.Downloading, { notifiedAt: NOW }),
        device('b', D.Queued),
        device('c', D.Queued),
      ],
      steps: ['notify b'],
    },
    {
      name: 'keeps to the notify rate, counted from the stored notifies: the last minute counts, older ones do not',
      waves: [wave(0, W.Running, { notifyRatePerMinute: 2 })],
      devices: [
        device('a', D.Committed, { notifiedAt: NOW - 70 * SECOND }),
        device('b', D.Committed, { notifiedAt: NOW - 10 * SECOND }),
        device('c', D.Queued),
        device('d', D.Queued),
      ],
      steps: ['notify c'],
    },
    {
      name: 'counts only the notifies of the current wave against its rate',
      waves: [wave(0, W.Succeeded), wave(1, W.Running, { notifyRatePerMinute: 1 })],
      devices: [
        device('a', D.Committed, { notifiedAt: NOW - 10 * SECOND }),
        device('b', D.Queued, { waveIndex: 1 }),
      ],
      steps: ['notify b'],
    },
    {
      name: 'waits for an approval before a gated wave',
      waves: [wave(0, W.Succeeded), wave(1, W.Pending, { requiresApproval: true })],
      devices: [device('a', D.Committed), device('b', D.Queued, { waveIndex: 1 })],
      steps: ['wave 2 awaiting-approval', 'log: wave 2 awaits approval'],
    },
    {
      name: 'completes the rollout once every wave succeeded',
      waves: [wave(0, W.Succeeded), wave(1, W.Succeeded)],
      devices: [device('a', D.Committed), device('b', D.Committed, { waveIndex: 1 })],
      steps: ['rollout completed', 'log: all waves succeeded'],
    },
    {
      name: 'does nothing while a wave waits for approval',
      waves: [wave(0, W.AwaitingApproval)],
      devices: [device('a', D.Queued)],
      steps: [],
    },
    // The success threshold and the default thresholds.
    {
      name: 'finishes a wave at its success threshold while devices still soak',
      waves: [wave(0, W.Running, { successThresholdPercent: 75 }), wave(1, W.Pending)],
      devices: [
        device('a', D.Committed),
        device('b', D.Committed),
        device('c', D.Committed),
        soaked('d', { soakUntil: NOW + 30 * SECOND }),
      ],
      steps: ['wave 1 succeeded', 'log: wave 1 succeeded: 3 of 4 committed'],
    },
    {
      name: 'by default a wave needs every device committed',
      waves: [wave(0, W.Running), wave(1, W.Pending)],
      devices: [
        ...['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].map((id) => device(id, D.Committed)),
        soaked('j', { soakUntil: NOW + 30 * SECOND }),
      ],
      steps: [],
    },
    {
      name: 'by default one failure in ten (10%) does not trip a wave',
      waves: [wave(0, W.Running)],
      devices: [
        ...['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((id) => device(id, D.Committed)),
        device('i', D.Queued),
        device('j', D.Failed),
      ],
      steps: ['notify i'],
    },
    {
      name: 'by default two failures in ten (20% > 10%) trip the wave and pause the rollout',
      waves: [wave(0, W.Running), wave(1, W.Pending)],
      devices: [
        ...['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map((id) => device(id, D.Committed)),
        device('i', D.Failed),
        device('j', D.RolledBack),
      ],
      steps: [
        'wave 1 tripped',
        'log: wave 1 tripped: 2 of 10 failed (threshold 10%)',
        'rollout paused',
        'log: rollout paused: wave 1 tripped: 2 of 10 failed (threshold 10%)',
      ],
    },
    // Abort on trip.
    {
      name: 'aborts on a trip when told to: devices at work go back, failed ones stay failed',
      rollout: rollout({ options: { onTrip: 'abort' } }),
      waves: [wave(0, W.Running, { errorThresholdPercent: 0 }), wave(1, W.Pending)],
      devices: [
        device('a', D.Failed, { reason: 'health check failed', previousDeployment }),
        device('b', D.Installing, { notifiedAt: NOW, previousDeployment }),
        device('c', D.Committed, { previousDeployment }),
        device('d', D.Queued, { waveIndex: 1 }),
      ],
      steps: [
        'wave 1 tripped',
        'log: wave 1 tripped: 1 of 3 failed (threshold 0%)',
        'rollout aborted',
        'log: rollout aborted: wave 1 tripped: 1 of 3 failed (threshold 0%)',
        'wave 2 aborted',
        'b rolled-back (rolled back: wave 1 tripped: 1 of 3 failed (threshold 0%))',
        'send b dep-old rollback',
      ],
    },
    {
      name: 'aborts on a trip with rollbackOnAbort: committed and failed devices go back too',
      rollout: rollout({ options: { onTrip: 'abort', rollbackOnAbort: true } }),
      waves: [wave(0, W.Running, { errorThresholdPercent: 0 })],
      devices: [
        device('a', D.Failed, { reason: 'health check failed', previousDeployment }),
        device('c', D.Committed, { previousDeployment }),
      ],
      steps: [
        'wave 1 tripped',
        'log: wave 1 tripped: 1 of 2 failed (threshold 0%)',
        'rollout aborted',
        'log: rollout aborted: wave 1 tripped: 1 of 2 failed (threshold 0%)',
        'a rolled-back (health check failed)',
        'send a dep-old rollback',
        'c rolled-back (rolled back: wave 1 tripped: 1 of 2 failed (threshold 0%))',
        'send c dep-old rollback',
      ],
    },
    // Retries.
    {
      name: 'retries a failed device with a new deployment before the wave is judged, then notifies it',
      waves: [wave(0, W.Running, { retries: 1, errorThresholdPercent: 0 })],
      devices: [device('a', D.Failed, { reason: 'download failed', notifiedAt: NOW - 5 * SECOND })],
      steps: ['a queued', 'notify a'],
    },
    {
      name: 'trips once a device has used up its retries',
      waves: [wave(0, W.Running, { retries: 1, errorThresholdPercent: 0 })],
      devices: [device('a', D.Failed, { attempt: 2 }), device('b', D.Queued)],
      steps: [
        'wave 1 tripped',
        'log: wave 1 tripped: 1 of 2 failed (threshold 0%)',
        'rollout paused',
        'log: rollout paused: wave 1 tripped: 1 of 2 failed (threshold 0%)',
      ],
    },
    {
      name: 'does not retry while the rollout is paused',
      rollout: rollout({ state: RolloutState.Paused }),
      waves: [wave(0, W.Tripped, { retries: 3 })],
      devices: [device('a', D.Failed)],
      steps: [],
    },
    // Late joiners.
    {
      name: 'puts a device that joined the target into the last open wave, and notifies it with it',
      rollout: rollout({ options: { dynamic: true } }),
      waves: [wave(0, W.Succeeded), wave(1, W.Running)],
      devices: [device('a', D.Committed), device('b', D.Downloading, { waveIndex: 1, notifiedAt: NOW })],
      target: ['a', 'b', 'z'],
      steps: ['add z@1', 'log: 1 device(s) joined wave wave 2: z', 'notify z'],
    },
    {
      name: 'takes no late joiners when the rollout is not dynamic',
      waves: [wave(0, W.Running)],
      devices: [device('a', D.Downloading, { notifiedAt: NOW })],
      target: ['a', 'z'],
      steps: [],
    },
    // The per-device timeout.
    {
      name: 'fails a device that gave no result within its timeout',
      waves: [wave(0, W.Running, { deviceTimeoutSeconds: 30, errorThresholdPercent: 50 })],
      devices: [
        device('a', D.Downloading, { notifiedAt: NOW - 31 * SECOND }),
        device('b', D.Installing, { notifiedAt: NOW - 29 * SECOND }),
        device('c', D.Committed),
      ],
      steps: ['a failed (no result within 30 s)'],
    },
    {
      name: 'times devices out in a paused rollout too, but a soaking device never times out',
      rollout: rollout({ state: RolloutState.Paused }),
      waves: [wave(0, W.Tripped, { deviceTimeoutSeconds: 30 })],
      devices: [
        device('a', D.Notified, { notifiedAt: NOW - 31 * SECOND }),
        soaked('b', { soakUntil: NOW + SECOND }),
      ],
      steps: ['a failed (no result within 30 s)'],
    },
    // The soak's heartbeat checks.
    {
      name: 'commits a device that stayed online and heartbeating through its soak',
      waves: [wave(0, W.Running)],
      devices: [soaked('a')],
      presence: { a: heartbeat },
      steps: ['a committed', 'wave 1 succeeded', 'log: wave 1 succeeded: 1 of 1 committed'],
    },
    {
      name: 'fails a device that is offline at the end of its soak',
      waves: [wave(0, W.Running, { errorThresholdPercent: 50 })],
      devices: [soaked('a'), soaked('b'), device('c', D.Committed)],
      presence: { a: { online: false, lastSeenAt: NOW - 2 * SECOND }, b: heartbeat },
      steps: [
        'a failed (offline at the end of the soak)',
        'b committed',
        'wave 1 succeeded',
        'log: wave 1 succeeded: 2 of 3 committed, 1 failed within the error threshold',
      ],
    },
    {
      name: 'fails a device that sent no heartbeat for longer than its soak',
      waves: [wave(0, W.Running, { soakSeconds: 60, errorThresholdPercent: 100 })],
      devices: [soaked('a')],
      presence: { a: { online: true, lastSeenAt: NOW - 70 * SECOND } },
      steps: [
        'a failed (no heartbeat for 70 s during the soak)',
        'wave 1 succeeded',
        'log: wave 1 succeeded: 0 of 1 committed, 1 failed within the error threshold',
      ],
    },
    {
      name: 'commits a device between two of the agent’s 30 s heartbeats after a 10 s soak',
      waves: [wave(0, W.Running, { soakSeconds: 10 })],
      devices: [soaked('a')],
      presence: { a: { online: true, lastSeenAt: NOW - 25 * SECOND } },
      steps: ['a committed', 'wave 1 succeeded', 'log: wave 1 succeeded: 1 of 1 committed'],
    },
    {
      name: 'fails a device silent for longer than 1.5 heartbeats when its soak is shorter',
      waves: [wave(0, W.Running, { soakSeconds: 10, errorThresholdPercent: 0 })],
      devices: [soaked('a'), soaked('b')],
      presence: { a: { online: true, lastSeenAt: NOW - 50 * SECOND }, b: heartbeat },
      steps: [
        'a failed (no heartbeat for 50 s during the soak)',
        'b committed',
        'wave 1 tripped',
        'log: wave 1 tripped: 1 of 2 failed (threshold 0%)',
        'rollout paused',
        'log: rollout paused: wave 1 tripped: 1 of 2 failed (threshold 0%)',
      ],
    },
    {
      name: 'counts a device the engine could not find as offline',
      waves: [wave(0, W.Running, { errorThresholdPercent: 100 })],
      devices: [soaked('a')],
      steps: [
        'a failed (offline at the end of the soak)',
        'wave 1 succeeded',
        'log: wave 1 succeeded: 0 of 1 committed, 1 failed within the error threshold',
      ],
    },
    // After a server restart every device starts offline: presence counts only once the grace is over.
    {
      name: 'waits for a device offline at the end of its soak while the server started within the grace',
      waves: [wave(0, W.Running, { errorThresholdPercent: 0 })],
      devices: [soaked('a'), soaked('b')],
      presence: { a: { online: false, lastSeenAt: NOW - 30 * SECOND } },
      presenceKnownSince: NOW - 5 * SECOND,
      steps: [],
    },
    {
      name: 'commits a device that reconnected within the grace after a restart',
      waves: [wave(0, W.Running)],
      devices: [soaked('a')],
      presence: { a: heartbeat },
      presenceKnownSince: NOW - 5 * SECOND,
      steps: ['a committed', 'wave 1 succeeded', 'log: wave 1 succeeded: 1 of 1 committed'],
    },
    {
      name: 'fails a device still offline once the grace after a restart is over',
      waves: [wave(0, W.Running, { errorThresholdPercent: 100 })],
      devices: [soaked('a')],
      presence: { a: { online: false, lastSeenAt: NOW - PRESENCE_GRACE_MS - 30 * SECOND } },
      presenceKnownSince: NOW - PRESENCE_GRACE_MS,
      steps: [
        'a failed (offline at the end of the soak)',
        'wave 1 succeeded',
        'log: wave 1 succeeded: 0 of 1 committed, 1 failed within the error threshold',
      ],
    },
    // After a database outage the heartbeats that waited for it are stored late: silence is not failure yet.
    {
      name: 'waits for a silent device at the end of its soak while the database came back within the grace',
      waves: [wave(0, W.Running, { soakSeconds: 5, errorThresholdPercent: 0 })],
      devices: [soaked('a')],
      presence: { a: { online: true, lastSeenAt: NOW - 50 * SECOND } },
      presenceKnownSince: NOW - SECOND,
      steps: [],
    },
    {
      name: 'fails a silent device once the grace after the database came back is over',
      waves: [wave(0, W.Running, { soakSeconds: 5, errorThresholdPercent: 100 })],
      devices: [soaked('a')],
      presence: { a: { online: true, lastSeenAt: NOW - PRESENCE_GRACE_MS - 50 * SECOND } },
      presenceKnownSince: NOW - PRESENCE_GRACE_MS,
      steps: [
        `a failed (no heartbeat for ${PRESENCE_GRACE_MS / 1000 + 50} s during the soak)`,
        'wave 1 succeeded',
        'log: wave 1 succeeded: 0 of 1 committed, 1 failed within the error threshold',
      ],
    },
    {
      name: 'still times out a device that gives no result within the grace',
      waves: [wave(0, W.Running, { deviceTimeoutSeconds: 30, errorThresholdPercent: 100 })],
      devices: [device('a', D.Downloading, { notifiedAt: NOW - 31 * SECOND })],
      presenceKnownSince: NOW - 5 * SECOND,
      steps: [
        'a failed (no result within 30 s)',
        'wave 1 succeeded',
        'log: wave 1 succeeded: 0 of 1 committed, 1 failed within the error threshold',
      ],
    },
    {
      name: 'leaves a device alone until its soak is over',
      waves: [wave(0, W.Running)],
      devices: [soaked('a', { soakUntil: NOW + SECOND })],
      steps: [],
    },
    // Paused and resumed rollouts.
    {
      name: 'moves no wave of a paused rollout',
      rollout: rollout({ state: RolloutState.Paused }),
      waves: [wave(0, W.Running), wave(1, W.Pending)],
      devices: [device('a', D.Committed), device('b', D.Queued, { waveIndex: 1 })],
      steps: [],
    },
    {
      name: 'carries on notifying the wave of a resumed rollout; its failed devices stay failed',
      waves: [wave(0, W.Running, { errorThresholdPercent: 50 })],
      devices: [device('a', D.Failed), device('b', D.Queued), device('c', D.Queued)],
      steps: ['notify b c'],
    },
  ])('$name', (row) => {
    expect(describeSteps(tick(row))).toEqual(row.steps);
  });

  it('gives retried and late-joining devices a new deployment id, and notifies them with it', () => {
    const steps = tick({
      rollout: rollout({ options: { dynamic: true } }),
      waves: [wave(0, W.Running, { retries: 1 })],
      devices: [device('a', D.Failed, { reason: 'download failed' })],
      target: ['a', 'z'],
    });
    expect(steps.find((step) => step.kind === 'move-device')).toMatchObject({
      deviceId: 'a',
      changes: { attempt: 2, deploymentId: 'dep-new-2', progress: null, notifiedAt: null },
    });
    const notify = steps.find((step) => step.kind === 'notify');
    expect(notify?.devices.map((d) => [d.deviceId, d.deploymentId, d.attempt])).toEqual([
      ['a', 'dep-new-2', 2],
      ['z', 'dep-new-1', 1],
    ]);
  });

  it('stamps every change with the planning time and never changes its input', () => {
    const devices = [device('a', D.Downloading, { notifiedAt: NOW - 3600 * SECOND })];
    const steps = tick({ waves: [wave(0, W.Running)], devices });
    expect(steps[0]).toMatchObject({ kind: 'move-device', changes: { stateChangedAt: NOW } });
    expect(devices[0]?.state).toBe(D.Downloading);
  });

  it('says which reads a tick needs: the target for late joiners, presence for soaks that are over', () => {
    const open = [wave(0, W.Succeeded), wave(1, W.Running)];
    expect(wantsLateJoiners(rollout({ options: { dynamic: true } }), open)).toBe(true);
    expect(wantsLateJoiners(rollout({ options: { dynamic: false } }), open)).toBe(false);
    expect(
      wantsLateJoiners(rollout({ options: { dynamic: true } }), [wave(0, W.Succeeded), wave(1, W.Tripped)]),
    ).toBe(false);
    expect(wantsLateJoiners(rollout({ state: RolloutState.Paused, options: { dynamic: true } }), open)).toBe(
      false,
    );
    expect(
      soaksDue([soaked('a'), soaked('b', { soakUntil: NOW + 1 }), device('c', D.Committed)], NOW),
    ).toEqual(['a']);
  });
});

describe('rollout planner: device reports', () => {
  const soakSeconds = 60;
  it.each([
    { from: D.Notified, report: 'downloading', steps: ['a downloading'] },
    { from: D.Downloading, report: 'downloading', steps: [] },
    { from: D.Downloading, report: 'installing', steps: ['a installing'] },
    { from: D.Installing, report: 'awaiting-reboot', steps: ['a awaiting-reboot'] },
    { from: D.AwaitingReboot, report: 'installed', steps: ['a soaking'] },
    { from: D.Installing, report: 'failed', steps: ['a failed (exit status 3)'] },
    { from: D.Failed, report: 'rolled-back', steps: ['a rolled-back (exit status 3)'] },
    { from: D.Committed, report: 'failed', steps: [] },
    { from: D.Queued, report: 'installed', steps: [] },
  ] as const)('$from + $report → $steps', ({ from, report, steps }) => {
    const message = report === 'failed' || report === 'rolled-back' ? 'exit status 3' : undefined;
    const planned = planDeviceReports(device('a', from), [{ report: { state: report }, message }], {
      now: NOW,
      soakSeconds,
    });
    expect(describeSteps(planned)).toEqual(steps);
  });

  it('starts the soak when the device says it committed on its side, and keeps the download progress', () => {
    expect(
      planDeviceReports(device('a', D.Installing), [{ report: { state: 'installed' }, message: undefined }], {
        now: NOW,
        soakSeconds,
      }),
    ).toEqual([expect.objectContaining({ changes: { soakUntil: NOW + 60 * SECOND, stateChangedAt: NOW } })]);
    expect(
      planDeviceReports(
        device('a', D.Notified),
        [{ report: { state: 'downloading', progress: 29.6 }, message: undefined }],
        { now: NOW, soakSeconds },
      ),
    ).toEqual([expect.objectContaining({ changes: { progress: 30, stateChangedAt: NOW } })]);
  });

  it('keeps how the artifact came (delta or full) and what it cost, from the report that says so', () => {
    const transfer = { mode: 'delta' as const, bytes: 38_000, artifactBytes: 71_884_288 };
    expect(
      planDeviceReports(
        device('a', D.Downloading),
        [{ report: { state: 'downloading', progress: 100, transfer }, message: undefined }],
        { now: NOW, soakSeconds },
      ),
    ).toEqual([
      expect.objectContaining({
        changes: {
          progress: 100,
          transferMode: 'delta',
          transferBytes: 38_000,
          artifactBytes: 71_884_288,
        },
      }),
    ]);
  });

  it.each([
    {
      name: 'applies reports in order, each seeing the one before',
      from: D.Downloading,
      reports: ['downloading', 'installing', 'installed'],
      steps: ['a installing', 'a soaking'],
    },
    {
      name: 'refuses every report already applied (stored reports applied again)',
      from: D.Soaking,
      reports: ['downloading', 'installing', 'installed'],
      steps: [],
    },
    {
      name: 'fails a device, then rolls it back, with its words',
      from: D.Installing,
      reports: ['downloading', 'failed', 'rolled-back'],
      steps: ['a failed (exit status 3)', 'a rolled-back (exit status 3)'],
    },
  ] as const)('several reports: $name', ({ from, reports, steps }) => {
    const stored = reports.map((state) => ({
      report: { state },
      message: state === 'failed' || state === 'rolled-back' ? 'exit status 3' : undefined,
    }));
    const planned = planDeviceReports(device('a', from), stored, { now: NOW, soakSeconds });
    expect(describeSteps(planned)).toEqual(steps);
  });

  it.each([
    { from: D.Soaking, steps: ['a failed (went offline during the soak)'] },
    { from: D.Downloading, steps: [] },
    { from: D.Committed, steps: [] },
  ])('a device that goes offline while $from → $steps', ({ from, steps }) => {
    expect(describeSteps(planOffline(device('a', from), NOW))).toEqual(steps);
  });
});

describe('rollout planner: delivery', () => {
  const artifact = { id: 'art-1', kind: 'app-bundle', name: 'app', version: '1.0.0' } as ArtifactRecord;

  it('notifies a device and sends it its artifact under its deployment id', () => {
    const steps = planDelivery(device('a', D.Queued), { artifact, parts: [] }, previousDeployment, NOW);
    expect(describeSteps(steps)).toEqual(['a notified', 'send a dep-a']);
    expect(steps[0]).toMatchObject({
      changes: { notifiedAt: NOW, artifactId: 'art-1', previousDeployment, progress: 0 },
    });
  });

  it('fails a device at once when it cannot be given an artifact', () => {
    expect(
      describeSteps(planDelivery(device('a', D.Queued), { failure: 'device revoked' }, null, NOW)),
    ).toEqual(['a notified', 'a failed (device revoked)']);
  });
});

describe('rollout planner: operator actions', () => {
  const paused = rollout({ state: RolloutState.Paused, reason: 'wave 1 tripped' });

  it.each([
    {
      name: 'pauses a running rollout',
      steps: planPause(rollout(), 'ann', NOW),
      expected: ['rollout paused', 'log: paused by ann'],
    },
    { name: 'refuses to pause a paused rollout', steps: planPause(paused, 'ann', NOW), expected: [] },
    {
      name: 'resumes a paused rollout and its tripped wave',
      steps: planResume(paused, [wave(0, W.Succeeded), wave(1, W.Tripped), wave(2, W.Pending)], 'ann', NOW),
      expected: ['rollout running', 'log: resumed by ann', 'wave 2 running'],
    },
    {
      name: 'refuses to resume a running rollout',
      steps: planResume(rollout(), [wave(0, W.Running)], 'ann', NOW),
      expected: [],
    },
    {
      name: 'approves the wave that awaits approval',
      steps: planApprove([wave(0, W.Succeeded), wave(1, W.AwaitingApproval)], 'ann', NOW),
      expected: ['wave 2 running', 'log: wave 2 approved by ann'],
    },
    {
      name: 'refuses an approval when no wave awaits one',
      steps: planApprove([wave(0, W.Running)], 'ann', NOW),
      expected: [],
    },
    {
      name: 'aborts: devices at work go back, queued and committed devices stay, unfinished waves abort',
      steps: planAbort(
        rollout(),
        [wave(0, W.Succeeded), wave(1, W.Running), wave(2, W.AwaitingApproval), wave(3, W.Pending)],
        [
          device('a', D.Committed, { previousDeployment }),
          device('b', D.Soaking, { previousDeployment }),
          device('c', D.Queued),
        ],
        'aborted by ann',
        NOW,
      ),
      expected: [
        'rollout aborted',
        'log: rollout aborted: aborted by ann',
        'wave 2 aborted',
        'wave 3 aborted',
        'wave 4 aborted',
        'b rolled-back (rolled back: aborted by ann)',
        'send b dep-old rollback',
      ],
    },
    {
      name: 'keeps a tripped wave tripped when the rollout is aborted: it says why the rollout stopped',
      steps: planAbort(
        rollout({ state: RolloutState.Paused }),
        [wave(0, W.Tripped), wave(1, W.Pending)],
        [],
        'aborted by ann',
        NOW,
      ),
      expected: ['rollout aborted', 'log: rollout aborted: aborted by ann', 'wave 2 aborted'],
    },
    {
      name: 'aborts with rollbackOnAbort: committed and failed devices go back too',
      steps: planAbort(
        rollout({ options: { rollbackOnAbort: true } }),
        [wave(0, W.Running)],
        [
          device('a', D.Committed, { previousDeployment }),
          device('b', D.Failed, { reason: 'timed out', previousDeployment }),
          device('c', D.RolledBack),
          device('d', D.Queued),
        ],
        'aborted by ann',
        NOW,
      ),
      expected: [
        'rollout aborted',
        'log: rollout aborted: aborted by ann',
        'wave 1 aborted',
        'a rolled-back (rolled back: aborted by ann)',
        'send a dep-old rollback',
        'b rolled-back (timed out)',
        'send b dep-old rollback',
      ],
    },
    {
      name: 'aborts with rollbackOnAbort: a device that ran no earlier deployment is not called rolled back',
      steps: planAbort(
        rollout({ options: { rollbackOnAbort: true } }),
        [wave(0, W.Running)],
        [
          device('a', D.Committed),
          device('b', D.Failed, { reason: 'timed out' }),
          device('c', D.Downloading),
        ],
        'aborted by ann',
        NOW,
      ),
      expected: [
        'rollout aborted',
        'log: rollout aborted: aborted by ann',
        'wave 1 aborted',
        'c failed (rollout aborted during the update (aborted by ann); no earlier deployment to go back to)',
        'log: 1 device(s) keep this release: they ran no earlier deployment to go back to',
      ],
    },
    {
      name: 'refuses to abort a completed rollout',
      steps: planAbort(
        rollout({ state: RolloutState.Completed, options: { rollbackOnAbort: true } }),
        [wave(0, W.Succeeded)],
        [device('a', D.Committed)],
        'aborted by ann',
        NOW,
      ),
      expected: [],
    },
  ])('$name', ({ steps, expected }) => {
    expect(describeSteps(steps)).toEqual(expected);
  });
});
