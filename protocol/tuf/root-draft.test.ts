import { describe, expect, it } from 'vitest';
import { tufRootSignedSchema } from './metadata.ts';
import { draftRoot, rootKeysOf } from './root-draft.ts';
import { generateTufKey, keyIdOf, tufKeyOf } from './signing.ts';

const EXPIRES = Date.UTC(2027, 11, 20);
const newKey = () => tufKeyOf(generateTufKey());
const online = () => ({ targets: newKey(), snapshot: newKey(), timestamp: newKey() });

describe('drafting a root', () => {
  it('drafts the first root: version 1, consistent snapshots, one key per online role', () => {
    const rootKeys = [newKey(), newKey(), newKey()];
    const onlineKeys = online();
    const root = draftRoot({ previous: null, rootKeys, threshold: 2, onlineKeys, expiresAt: EXPIRES });
    expect(tufRootSignedSchema.parse(root)).toEqual(root);
    expect(root).toMatchObject({ version: 1, expires: '2027-12-20T00:00:00Z', consistent_snapshot: true });
    expect(root.roles.root).toEqual({ keyids: rootKeys.map(keyIdOf), threshold: 2 });
    expect(root.roles.targets).toEqual({ keyids: [keyIdOf(onlineKeys.targets)], threshold: 1 });
    expect(Object.keys(root.keys)).toHaveLength(6);
  });

  it('keeps the root keys and threshold of the previous root unless told otherwise', () => {
    const first = draftRoot({
      previous: null,
      rootKeys: [newKey(), newKey()],
      threshold: 2,
      onlineKeys: online(),
      expiresAt: EXPIRES,
    });
    const rotatedTargets = online();
    const second = draftRoot({
      previous: first,
      rootKeys: null,
      threshold: null,
      onlineKeys: rotatedTargets,
      expiresAt: EXPIRES,
    });
    expect(second.version).toBe(2);
    expect(second.roles.root).toEqual(first.roles.root);
    expect(rootKeysOf(second)).toEqual(rootKeysOf(first));
    expect(second.roles.targets.keyids).toEqual([keyIdOf(rotatedTargets.targets)]);
    // The replaced online keys are gone from the new root.
    expect(Object.keys(second.keys)).toHaveLength(5);
  });

  it('refuses a threshold its root keys cannot meet, and an online key that is a root key', () => {
    const rootKey = newKey();
    expect(() =>
      draftRoot({
        previous: null,
        rootKeys: [rootKey, rootKey],
        threshold: 2,
        onlineKeys: online(),
        expiresAt: EXPIRES,
      }),
    ).toThrow('threshold 2 cannot be met by 1 distinct root key(s): use 1 to 1');
    expect(() =>
      draftRoot({
        previous: null,
        rootKeys: [rootKey],
        threshold: 1,
        onlineKeys: { ...online(), snapshot: rootKey },
        expiresAt: EXPIRES,
      }),
    ).toThrow(/the snapshot key \w+ is also a root key: root keys stay offline/);
    expect(() =>
      draftRoot({
        previous: null,
        rootKeys: null,
        threshold: null,
        onlineKeys: online(),
        expiresAt: EXPIRES,
      }),
    ).toThrow('the first root needs its root keys and a threshold');
  });
});
