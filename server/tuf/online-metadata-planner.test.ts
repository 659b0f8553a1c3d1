import { describe, expect, it } from 'vitest';
import { metaFileOf, type TufTargetFile } from '../../protocol/tuf/metadata.ts';
import {
  isDue,
  nextOnlineStep,
  ONLINE_LIFETIME_MS,
  type OnlineState,
  type PublishedFacts,
} from './online-metadata-planner.ts';

const HOUR = 60 * 60 * 1000;
const T0 = Date.UTC(2026, 11, 20, 12);
const signers = { targets: 'k-targets', snapshot: 'k-snapshot', timestamp: 'k-timestamp' };
const app: Record<string, TufTargetFile> = {
  'artifacts/app/1.0.0': { length: 5, hashes: { sha256: 'a'.repeat(64) } },
};
const appAndOrder: Record<string, TufTargetFile> = {
  ...app,
  'rollback-orders/rbo-1': { length: 9, hashes: { sha256: 'b'.repeat(64) } },
};

const published = (
  role: keyof typeof signers,
  version: number,
  overrides: Partial<PublishedFacts> = {},
): PublishedFacts => ({
  version,
  signedAt: T0,
  expiresAt: T0 + ONLINE_LIFETIME_MS[role],
  keyId: signers[role],
  meta: metaFileOf(version, `${role} ${version}`),
  ...overrides,
});

/** A repository where everything is current at T0: targets v2 lists `app`. */
function current(overrides: Partial<OnlineState> = {}): OnlineState {
  const targets = { ...published('targets', 2), targets: app };
  const snapshot = { ...published('snapshot', 3), targetsMeta: targets.meta };
  const timestamp = { ...published('timestamp', 7), snapshotMeta: snapshot.meta };
  return { now: T0, signers, targets, snapshot, timestamp, wantedTargets: app, ...overrides };
}

const describeStep = (state: OnlineState) => {
  const step = nextOnlineStep(state);
  return step ? `${step.role} v${step.signed.version} by ${step.keyId} (${step.reason})` : 'nothing';
};

describe('the online metadata planner', () => {
  it.each([
    { name: 'signs nothing while everything is current', state: current(), expected: 'nothing' },
    {
      name: 'signs targets first on a new repository',
      state: current({ targets: null, snapshot: null, timestamp: null }),
      expected: 'targets v1 by k-targets (first)',
    },
    {
      name: 'signs the first snapshot once targets exists',
      state: current({ snapshot: null, timestamp: null }),
      expected: 'snapshot v1 by k-snapshot (first)',
    },
    {
      name: 'signs the first timestamp once snapshot exists',
      state: current({ timestamp: null }),
      expected: 'timestamp v1 by k-timestamp (first)',
    },
    {
      name: 'signs targets again when what it should list changed',
      state: current({ wantedTargets: appAndOrder }),
      expected: 'targets v3 by k-targets (changed)',
    },
    {
      name: 'signs a snapshot naming the newest targets',
      state: current({ snapshot: { ...published('snapshot', 3), targetsMeta: metaFileOf(1, 'older') } }),
      expected: 'snapshot v4 by k-snapshot (changed)',
    },
    {
      name: 'signs a timestamp naming the newest snapshot',
      state: current({ timestamp: { ...published('timestamp', 7), snapshotMeta: metaFileOf(2, 'older') } }),
      expected: 'timestamp v8 by k-timestamp (changed)',
    },
    {
      name: 'signs targets with the key a new root names',
      state: current({ signers: { ...signers, targets: 'k-targets-2' } }),
      expected: 'targets v3 by k-targets-2 (new-key)',
    },
    {
      name: 'signs a timestamp with a rotated timestamp key, and nothing else',
      state: current({ signers: { ...signers, timestamp: 'k-timestamp-2' } }),
      expected: 'timestamp v8 by k-timestamp-2 (new-key)',
    },
    {
      name: 'refreshes the timestamp once half its day is gone',
      state: current({ now: T0 + 12 * HOUR }),
      expected: 'timestamp v8 by k-timestamp (refresh)',
    },
    {
      name: 'leaves the timestamp alone before half its day is gone',
      state: current({ now: T0 + 12 * HOUR - 1 }),
      expected: 'nothing',
    },
    {
      name: 'refreshes the snapshot once half its week is gone, before the timestamp',
      state: current({ now: T0 + 84 * HOUR }),
      expected: 'snapshot v4 by k-snapshot (refresh)',
    },
  ])('$name', ({ state, expected }) => {
    expect(describeStep(state)).toBe(expected);
  });

  it('lists what it was asked to, with an expiry its lifetime away, to the second', () => {
    const step = nextOnlineStep(current({ now: T0 + 1234, wantedTargets: appAndOrder }));
    expect(step).toMatchObject({
      role: 'targets',
      targetCount: 2,
      signed: {
        _type: 'targets',
        spec_version: '1.0.31',
        version: 3,
        expires: '2027-03-20T12:00:01Z',
        targets: appAndOrder,
      },
    });
  });

  it('makes a timestamp that expires within a day and names the snapshot by version, length and hash', () => {
    const state = current({ timestamp: null });
    const step = nextOnlineStep(state);
    expect(step?.signed).toEqual({
      _type: 'timestamp',
      spec_version: '1.0.31',
      version: 1,
      expires: '2026-12-21T12:00:00Z',
      meta: { 'snapshot.json': state.snapshot?.meta },
    });
    expect(ONLINE_LIFETIME_MS.timestamp).toBeLessThanOrEqual(24 * HOUR);
  });

  it('settles: applying each step in turn ends with nothing to do', () => {
    let state = current({ targets: null, snapshot: null, timestamp: null });
    const taken: string[] = [];
    for (let step = nextOnlineStep(state); step; step = nextOnlineStep(state)) {
      taken.push(step.role);
      const meta = metaFileOf(step.signed.version, JSON.stringify(step.signed));
      const facts = { ...published(step.role, step.signed.version), keyId: step.keyId, meta };
      if (step.role === 'targets') state = { ...state, targets: { ...facts, targets: step.signed.targets } };
      if (step.role === 'snapshot')
        state = { ...state, snapshot: { ...facts, targetsMeta: step.signed.meta['targets.json'] } };
      if (step.role === 'timestamp')
        state = { ...state, timestamp: { ...facts, snapshotMeta: step.signed.meta['snapshot.json'] } };
      expect(taken.length).toBeLessThan(10);
    }
    expect(taken).toEqual(['targets', 'snapshot', 'timestamp']);
  });

  it('calls a document due at half its life', () => {
    expect(isDue({ signedAt: 0, expiresAt: 100 }, 49)).toBe(false);
    expect(isDue({ signedAt: 0, expiresAt: 100 }, 50)).toBe(true);
  });
});
