/**
 * Whether the server publishes a root an operator hands in: the checks a TUF client makes when it
 * follows the chain (version, thresholds of the old and the new root), and the server's own (it
 * must hold the online keys the root names, and no root key). Pure.
 */
import {
  ONLINE_ROLES,
  type OnlineRole,
  TOP_LEVEL_ROLES,
  type TufRoot,
  type TufRootSigned,
} from '../../protocol/tuf/metadata.ts';
import { keyIdOf, keysThatSigned } from '../../protocol/tuf/signing.ts';

const DRAFT_HINT = 'draft it with boardfleet keys draft-root';

/**
 * Why `candidate` may not follow `previous` (null: it would be the first root), or null when it
 * may. `held` lists, per online role, the ids of the keys the server holds for it. The first
 * check that fails is named.
 */
export function rootRefusal(
  candidate: TufRoot,
  previous: TufRootSigned | null,
  held: Record<OnlineRole, string[]>,
  now: number,
): string | null {
  const why = firstFailedCheck(candidate, previous, held, now);
  return why === null ? null : `root version ${candidate.signed.version} refused: ${why}`;
}

function firstFailedCheck(
  candidate: TufRoot,
  previous: TufRootSigned | null,
  held: Record<OnlineRole, string[]>,
  now: number,
): string | null {
  const { signed } = candidate;
  const expected = (previous?.version ?? 0) + 1;
  if (signed.version !== expected)
    return previous
      ? `the current root is version ${previous.version}, so the next must be ${expected}: ${DRAFT_HINT}`
      : 'the first root must be version 1';
  if (Date.parse(signed.expires) <= now) return `it expired at ${signed.expires}`;
  if (!signed.consistent_snapshot)
    return 'consistent_snapshot must be true: the server serves each snapshot and targets version under its own name (N.snapshot.json), so no client reads a file while it changes';

  for (const [keyid, key] of Object.entries(signed.keys)) {
    const actual = keyIdOf(key);
    if (actual !== keyid) return `key id ${keyid} is not the sha256 of its key (that is ${actual})`;
  }
  for (const role of TOP_LEVEL_ROLES) {
    const { keyids, threshold } = signed.roles[role];
    const missing = keyids.find((keyid) => !signed.keys[keyid]);
    if (missing) return `the ${role} role names key ${missing}, which is not in keys`;
    if (new Set(keyids).size !== keyids.length) return `the ${role} role names a key twice`;
    if (threshold > keyids.length)
      return `the ${role} role's threshold ${threshold} is more than its ${keyids.length} key(s)`;
  }

  for (const role of ONLINE_ROLES) {
    const { keyids, threshold } = signed.roles[role];
    const [keyid] = keyids;
    if (keyid === undefined || keyids.length !== 1 || threshold !== 1)
      return `the ${role} role must name one key with threshold 1: the server signs ${role} with one key`;
    if (!held[role].includes(keyid))
      return `the ${role} role names key ${keyid}, which is not a key the server holds for ${role} (it holds ${held[role].join(', ') || 'none'}): ${DRAFT_HINT}`;
  }
  const onlineKeys = new Set(Object.values(held).flat());
  const onlineRootKey = signed.roles.root.keyids.find((keyid) => onlineKeys.has(keyid));
  if (onlineRootKey)
    return `root key ${onlineRootKey} is one of the server's online keys: root keys stay offline`;

  // A stock client refuses a document that a key signs twice.
  const signers = candidate.signatures.map((signature) => signature.keyid);
  const twice = signers.find((keyid, index) => signers.indexOf(keyid) !== index);
  if (twice) return `it carries two signatures by key ${twice}`;

  const own = keysThatSigned(candidate, signed.roles.root, signed.keys).length;
  if (own < signed.roles.root.threshold)
    return `signed by ${own} of its own root keys; it needs ${signed.roles.root.threshold}`;
  if (previous) {
    const old = keysThatSigned(candidate, previous.roles.root, previous.keys).length;
    if (old < previous.roles.root.threshold)
      return `signed by ${old} of version ${previous.version}'s root keys; it needs ${previous.roles.root.threshold}, since devices trust a new root only on the word of the old one`;
  }
  return null;
}
