import { BoardfleetError } from '../errors.ts';
import {
  ONLINE_ROLES,
  type OnlineRole,
  TUF_SPEC_VERSION,
  type TufKey,
  type TufRole,
  type TufRootSigned,
  tufTime,
} from './metadata.ts';
import { keyIdOf } from './signing.ts';

export interface RootDraft {
  /** The root this one follows; null for the first. */
  previous: TufRootSigned | null;
  /** The offline keys of the root role; null keeps the previous root's. */
  rootKeys: TufKey[] | null;
  /** How many root keys must sign; null keeps the previous root's. */
  threshold: number | null;
  /** The key each online role signs with: the server's, one each. */
  onlineKeys: Record<OnlineRole, TufKey>;
  expiresAt: number;
}

/**
 * The next root, unsigned. Consistent snapshots are always on: the server serves every version
 * of snapshot and targets under its own name, so replicas and clients never race on a file.
 */
export function draftRoot(draft: RootDraft): TufRootSigned {
  const { previous } = draft;
  const rootKeys = draft.rootKeys ?? (previous ? rootKeysOf(previous) : null);
  const threshold = draft.threshold ?? previous?.roles.root.threshold ?? null;
  if (rootKeys === null || threshold === null)
    throw new BoardfleetError('invalid-arguments', 'the first root needs its root keys and a threshold');
  const rootKeyIds = [...new Set(rootKeys.map(keyIdOf))];
  if (threshold < 1 || threshold > rootKeyIds.length)
    throw new BoardfleetError(
      'invalid-arguments',
      `threshold ${threshold} cannot be met by ${rootKeyIds.length} distinct root key(s): use 1 to ${rootKeyIds.length}`,
    );
  const keys: Record<string, TufKey> = {};
  for (const key of rootKeys) keys[keyIdOf(key)] = key;
  const onlineRole = (role: OnlineRole): TufRole => {
    const key = draft.onlineKeys[role];
    const keyid = keyIdOf(key);
    if (keys[keyid] && rootKeyIds.includes(keyid))
      throw new BoardfleetError(
        'invalid-arguments',
        `the ${role} key ${keyid} is also a root key: root keys stay offline`,
      );
    keys[keyid] = key;
    return { keyids: [keyid], threshold: 1 };
  };
  return {
    _type: 'root',
    spec_version: TUF_SPEC_VERSION,
    version: (previous?.version ?? 0) + 1,
    expires: tufTime(draft.expiresAt),
    consistent_snapshot: true,
    keys,
    roles: {
      root: { keyids: rootKeyIds, threshold },
      ...(Object.fromEntries(ONLINE_ROLES.map((role) => [role, onlineRole(role)])) as Record<
        OnlineRole,
        TufRole
      >),
    },
  };
}

/** The keys of a root's root role. */
export function rootKeysOf(root: TufRootSigned): TufKey[] {
  return root.roles.root.keyids.flatMap((keyid) => (root.keys[keyid] ? [root.keys[keyid]] : []));
}
