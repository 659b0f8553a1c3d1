/**
 * Decides which online document (targets, snapshot, timestamp) the server signs next, from what
 * is published, the key the current root names for each role, what targets.json should list and
 * the clock. Pure: the publisher signs and stores the step, reads the repository again and asks
 * again, until there is nothing left to do.
 */
import { canonicalize } from '@tufjs/canonical-json';
import {
  type OnlineRole,
  snapshotSigned,
  targetsSigned,
  timestampSigned,
  toWholeSecond,
  type TufMetaFile,
  type TufSnapshotSigned,
  type TufTargetFile,
  type TufTargetsSigned,
  type TufTimestampSigned,
} from '../../protocol/tuf/metadata.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * How long each document is valid when signed. The timestamp is short (issue 16: at most a
 * day), so a client cut off from the server, or fed old metadata, notices within a day.
 */
export const ONLINE_LIFETIME_MS: Record<OnlineRole, number> = {
  targets: 90 * DAY_MS,
  snapshot: 7 * DAY_MS,
  timestamp: DAY_MS,
};

export interface PublishedFacts {
  version: number;
  signedAt: number;
  expiresAt: number;
  keyId: string | null;
  /** How a document that names this one names it: version, length and sha256 of its bytes. */
  meta: TufMetaFile;
}

export interface OnlineState {
  now: number;
  /** The key each role must be signed with: the one the current root names. */
  signers: Record<OnlineRole, string>;
  targets: (PublishedFacts & { targets: Record<string, TufTargetFile> }) | null;
  snapshot: (PublishedFacts & { targetsMeta: TufMetaFile | undefined }) | null;
  timestamp: (PublishedFacts & { snapshotMeta: TufMetaFile }) | null;
  /** What targets.json should list now. */
  wantedTargets: Record<string, TufTargetFile>;
}

export type StepReason = 'first' | 'changed' | 'new-key' | 'refresh';

export type OnlineStep = { keyId: string; reason: StepReason } & (
  | { role: 'targets'; signed: TufTargetsSigned; targetCount: number }
  | { role: 'snapshot'; signed: TufSnapshotSigned }
  | { role: 'timestamp'; signed: TufTimestampSigned }
);

/** Re-signed once less than half its life is left: a missed check or two still leaves it valid. */
export function isDue(document: { signedAt: number; expiresAt: number }, now: number): boolean {
  return now >= document.signedAt + (document.expiresAt - document.signedAt) / 2;
}

const sameJson = (a: unknown, b: unknown) => canonicalize(a) === canonicalize(b);

/** Why a published document needs signing again, or null when it is current. */
function reasonToSign(
  published: PublishedFacts,
  signer: string,
  changed: boolean,
  now: number,
): StepReason | null {
  if (published.keyId !== signer) return 'new-key';
  if (changed) return 'changed';
  return isDue(published, now) ? 'refresh' : null;
}

/**
 * The next document to sign, each on top of the one before: targets, then the snapshot naming
 * it, then the timestamp naming that. Null when everything published is current.
 */
export function nextOnlineStep(state: OnlineState): OnlineStep | null {
  const { now, signers, targets, snapshot, timestamp } = state;
  const expiresAt = (role: OnlineRole) => toWholeSecond(now + ONLINE_LIFETIME_MS[role]);
  const nextVersion = (published: PublishedFacts | null) => (published?.version ?? 0) + 1;

  const targetsStep = (reason: StepReason): OnlineStep => ({
    role: 'targets',
    keyId: signers.targets,
    reason,
    signed: targetsSigned(nextVersion(targets), expiresAt('targets'), state.wantedTargets),
    targetCount: Object.keys(state.wantedTargets).length,
  });
  if (!targets) return targetsStep('first');
  const targetsReason = reasonToSign(
    targets,
    signers.targets,
    !sameJson(targets.targets, state.wantedTargets),
    now,
  );
  if (targetsReason) return targetsStep(targetsReason);

  const snapshotStep = (reason: StepReason): OnlineStep => ({
    role: 'snapshot',
    keyId: signers.snapshot,
    reason,
    signed: snapshotSigned(nextVersion(snapshot), expiresAt('snapshot'), targets.meta),
  });
  if (!snapshot) return snapshotStep('first');
  const snapshotReason = reasonToSign(
    snapshot,
    signers.snapshot,
    !sameJson(snapshot.targetsMeta, targets.meta),
    now,
  );
  if (snapshotReason) return snapshotStep(snapshotReason);

  const timestampStep = (reason: StepReason): OnlineStep => ({
    role: 'timestamp',
    keyId: signers.timestamp,
    reason,
    signed: timestampSigned(nextVersion(timestamp), expiresAt('timestamp'), snapshot.meta),
  });
  if (!timestamp) return timestampStep('first');
  const timestampReason = reasonToSign(
    timestamp,
    signers.timestamp,
    !sameJson(timestamp.snapshotMeta, snapshot.meta),
    now,
  );
  return timestampReason ? timestampStep(timestampReason) : null;
}
