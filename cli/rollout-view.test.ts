import { describe, expect, it } from 'vitest';
import { type RolloutStatus, waveConfigSchema } from '../protocol/api/rollouts.ts';
import type { Paint } from './output.ts';
import { artifactLabelsOf, renderRolloutStatus, statusSignature, waveEtas } from './rollout-view.ts';

const NOW = 1_000_000_000;
const SECOND = 1000;
const plain: Paint = (text) => text;

type Device = RolloutStatus['devices'][number];
type Wave = RolloutStatus['waves'][number];

function device(
  deviceId: string,
  waveIndex: number,
  state: Device['state'],
  extra: Partial<Device> = {},
): Device {
  return {
    deviceId,
    deviceName: `name-${deviceId}`,
    waveIndex,
    deploymentId: `dep-${deviceId}`,
    state,
    attempt: 1,
    artifactId: 'art',
    partArtifactIds: [],
    progress: null,
    transferMode: null,
    transferBytes: null,
    artifactBytes: null,
    reason: null,
    notifiedAt: null,
    soakUntil: null,
    stateChangedAt: NOW,
    ...extra,
  };
}

function wave(index: number, state: Wave['state'], devices: Device[], extra: Partial<Wave> = {}): Wave {
  const members = devices.filter((d) => d.waveIndex === index);
  const count = (states: string[]) => members.filter((d) => states.includes(d.state)).length;
  return {
    index,
    name: `${(index + 1) * 50}%`,
    config: waveConfigSchema.parse({ soakSeconds: 30, maxParallel: 2 }),
    state,
    startedAt: null,
    finishedAt: null,
    counts: {
      size: members.length,
      committed: count(['committed']),
      failed: count(['failed', 'rolled-back']),
      rolledBack: count(['rolled-back']),
      queued: count(['queued']),
      inProgress: count(['notified', 'downloading', 'installing', 'awaiting-reboot', 'soaking']),
    },
    ...extra,
  };
}

function status(state: RolloutStatus['state'], waves: Wave[], devices: Device[]): RolloutStatus {
  return {
    id: 'ro-1',
    name: 'app-1.2.0 rollout',
    releaseId: 'rel',
    target: { tags: ['lab'] },
    options: { onTrip: 'pause', rollbackOnAbort: true, dynamic: false },
    state,
    reason: state === 'aborted' ? 'aborted by admin' : null,
    createdAt: NOW - 125 * SECOND,
    updatedAt: NOW - 5 * SECOND,
    waves,
    devices,
    transfer: { deltaDevices: 0, fullDevices: 0, bytes: 0, artifactBytes: 0 },
    log: [],
  };
}

describe('rollout status view', () => {
  it('sums up what the downloads cost, delta and full, and what deltas saved', () => {
    const devices = [device('d1', 0, 'committed'), device('d2', 0, 'committed')];
    const running = status('running', [wave(0, 'running', devices)], devices);
    expect(renderRolloutStatus(running, NOW, plain)).not.toContain('downloads:');
    running.transfer = {
      deltaDevices: 1,
      fullDevices: 1,
      bytes: 70 * 1024 ** 2,
      artifactBytes: 140 * 1024 ** 2,
    };
    expect(renderRolloutStatus(running, NOW, plain)).toContain(
      'downloads: 1 delta, 1 full — 70.0 MiB fetched of 140.0 MiB in full (50% saved)',
    );
  });

  it('draws rolled-back devices as rolled back, not failed, and the unfinished wave as aborted', () => {
    const devices = [
      device('a', 0, 'rolled-back', { reason: 'rolled back: aborted by admin' }),
      device('b', 0, 'rolled-back', { reason: 'rolled back: aborted by admin' }),
      device('c', 1, 'rolled-back', { reason: 'rolled back: aborted by admin' }),
      device('d', 1, 'failed', { reason: 'health check failed' }),
      device('e', 1, 'queued'),
      device('f', 1, 'queued'),
    ];
    const text = renderRolloutStatus(
      status(
        'aborted',
        [
          wave(0, 'succeeded', devices, { startedAt: NOW - 120 * SECOND, finishedAt: NOW - 60 * SECOND }),
          wave(1, 'aborted', devices, { startedAt: NOW - 60 * SECOND, finishedAt: NOW - 5 * SECOND }),
        ],
        devices,
      ),
      NOW,
      plain,
    );
    expect(text.split('\n')).toEqual([
      'app-1.2.0 rollout (ro-1): aborted — aborted by admin (took 2m 0s)',
      '  50%        succeeded         [<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<] 0/2 committed, 0 in progress, 2 rolled back',
      '             took 1m 0s',
      '  100%       aborted           [xxxxxxxx<<<<<<<<..............] 0/4 committed, 0 in progress, 1 failed, 1 rolled back, 2 queued',
      '             took 55s',
      '  # committed  ~ in progress  x failed  < rolled back  . queued',
      '  < rolled back  name-a (a) — rolled back: aborted by admin',
      '  < rolled back  name-b (b) — rolled back: aborted by admin',
      '  < rolled back  name-c (c) — rolled back: aborted by admin',
      '  x failed  name-d (d) — health check failed',
    ]);
  });

  it('shows elapsed time, the soak countdown and an ETA for the running wave and the next', () => {
    const devices = [
      device('a', 0, 'committed', { notifiedAt: NOW - 50 * SECOND, stateChangedAt: NOW - 10 * SECOND }),
      device('b', 0, 'soaking', { notifiedAt: NOW - 30 * SECOND, soakUntil: NOW + 12 * SECOND }),
      device('c', 1, 'queued'),
      device('d', 1, 'queued'),
    ];
    const running = status(
      'running',
      [wave(0, 'running', devices, { startedAt: NOW - 50 * SECOND }), wave(1, 'pending', devices)],
      devices,
    );
    // Wave 1: one of two done in 50 s, so 50 s more (beyond the 12 s soak left). Wave 2: its two
    // devices in one batch, each 10 s of work (40 s less the 30 s soak) plus the soak: 40 s later.
    expect(waveEtas(running, NOW)).toEqual(
      new Map([
        [0, 50 * SECOND],
        [1, 90 * SECOND],
      ]),
    );
    const text = renderRolloutStatus(running, NOW, plain);
    expect(text).toContain('app-1.2.0 rollout (ro-1): running (elapsed 2m 5s)');
    expect(text).toContain('elapsed 50s, soak 12s left (1 soaking), ETA 50s');
    expect(text).toContain('ETA 1m 30s');
  });

  it('says a wave that awaits approval waits for it, and knows no ETA before anything was measured', () => {
    const devices = [
      device('a', 0, 'downloading', { notifiedAt: NOW - 5 * SECOND }),
      device('b', 1, 'queued'),
    ];
    const text = renderRolloutStatus(
      status(
        'running',
        [wave(0, 'running', devices, { startedAt: NOW - 5 * SECOND }), wave(1, 'awaiting-approval', devices)],
        devices,
      ),
      NOW,
      plain,
    );
    expect(text).toContain('elapsed 5s, ETA unknown');
    expect(text).toContain('waits for: boardfleet rollout approve ro-1');
  });

  it('changes its signature with states and counts, not with the clock', () => {
    const devices = [device('a', 0, 'soaking')];
    const before = status('running', [wave(0, 'running', devices)], devices);
    const later = { ...before, updatedAt: before.updatedAt + 1 };
    const committed = [device('a', 0, 'committed')];
    expect(statusSignature(later)).toBe(statusSignature(before));
    expect(statusSignature(status('running', [wave(0, 'running', committed)], committed))).not.toBe(
      statusSignature(before),
    );
  });
});

describe('rollout status view of a composite release', () => {
  const labels = new Map([
    ['art-app', { name: 'gateway-app', version: '1.0.0', boards: ['rpi-4b'] }],
    ['art-fw', { name: 'gateway-firmware', version: '1.0.0', boards: ['uno'] }],
  ]);
  const devices = [
    device('gw-1', 0, 'committed', { artifactId: 'art-app', partArtifactIds: ['art-fw'] }),
    device('gw-2', 0, 'committed', { artifactId: 'art-app' }),
    device('gw-3', 0, 'failed', {
      artifactId: null,
      reason: 'release gateway-1.0.0 has no firmware for the nano attached on /dev/ttyUSB0',
    }),
  ];
  const composite = status('completed', [wave(0, 'succeeded', devices)], devices);

  it('names the parts under the header and each device’s parts in a column', () => {
    const text = renderRolloutStatus(composite, NOW, plain, labels);
    const lines = text.split('\n');
    expect(lines[1]).toBe('  parts: gateway-app 1.0.0 (rpi-4b), gateway-firmware 1.0.0 (uno)');
    const table = lines.slice(lines.findIndex((line) => line.trimStart().startsWith('device')));
    expect(table.slice(0, 4)).toEqual([
      '  device            state      parts',
      '  name-gw-1 (gw-1)  committed  gateway-app 1.0.0, gateway-firmware 1.0.0',
      '  name-gw-2 (gw-2)  committed  gateway-app 1.0.0',
      '  name-gw-3 (gw-3)  failed     -',
    ]);
  });

  it('shows an artifact it could not look up by its id, and adds nothing for a release of one artifact', async () => {
    expect(renderRolloutStatus(composite, NOW, plain).split('\n')[1]).toBe('  parts: art-app, art-fw');
    const single = [device('a', 0, 'committed')];
    const text = renderRolloutStatus(status('completed', [wave(0, 'succeeded', single)], single), NOW, plain);
    expect(text).not.toMatch(/parts/);
  });

  it('looks each artifact up once across re-draws, and leaves out one it cannot read', async () => {
    const asked: string[] = [];
    const lookUp = async (id: string) => {
      asked.push(id);
      if (id === 'art-fw') throw new Error('404');
      return labels.get(id)!;
    };
    const cache = new Map();
    await artifactLabelsOf(composite, lookUp, cache);
    const again = await artifactLabelsOf(composite, lookUp, cache);
    expect(asked).toEqual(['art-app', 'art-fw', 'art-fw']);
    expect([...again.keys()]).toEqual(['art-app']);
  });
});
