import type { KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type TufRoot, type TufRootSigned } from '../../protocol/tuf/metadata.ts';
import { draftRoot } from '../../protocol/tuf/root-draft.ts';
import { generateTufKey, keyIdOf, signatureBy, tufKeyOf } from '../../protocol/tuf/signing.ts';
import { rootRefusal } from './root-checks.ts';

const NOW = Date.UTC(2026, 11, 20);
const YEAR = 365 * 24 * 60 * 60 * 1000;

const [a, b, c, d, e] = [
  generateTufKey(),
  generateTufKey(),
  generateTufKey(),
  generateTufKey(),
  generateTufKey(),
];
const online = { targets: generateTufKey(), snapshot: generateTufKey(), timestamp: generateTufKey() };
const rotatedTargets = generateTufKey();
const id = (key: KeyObject) => keyIdOf(tufKeyOf(key));
const held = {
  targets: [id(online.targets), id(rotatedTargets)],
  snapshot: [id(online.snapshot)],
  timestamp: [id(online.timestamp)],
};
const onlineKeys = (targets = online.targets) => ({
  targets: tufKeyOf(targets),
  snapshot: tufKeyOf(online.snapshot),
  timestamp: tufKeyOf(online.timestamp),
});

const signedBy = (signed: TufRootSigned, ...keys: KeyObject[]): TufRoot => ({
  signed,
  signatures: keys.map((key) => signatureBy(signed, key)),
});

/** Root v1: a, b, c with threshold 2. */
const first = draftRoot({
  previous: null,
  rootKeys: [a, b, c].map(tufKeyOf),
  threshold: 2,
  onlineKeys: onlineKeys(),
  expiresAt: NOW + YEAR,
});
/** Root v2: d, e with threshold 2, and the rotated targets key. */
const second = draftRoot({
  previous: first,
  rootKeys: [d, e].map(tufKeyOf),
  threshold: 2,
  onlineKeys: onlineKeys(rotatedTargets),
  expiresAt: NOW + YEAR,
});

describe('the checks on a root an operator publishes', () => {
  it.each([
    { name: 'the first root, signed by 2 of its 3 keys', root: signedBy(first, a, c), previous: null },
    {
      name: 'a new root signed by 2 of the old keys and 2 of its own',
      root: signedBy(second, a, b, d, e),
      previous: first,
    },
    {
      name: 'the same root keys with a rotated online key, signed by 2 of them',
      root: signedBy(
        {
          ...second,
          keys: { ...second.keys, ...first.keys },
          roles: { ...second.roles, root: first.roles.root },
        },
        b,
        c,
      ),
      previous: first,
    },
  ])('accepts $name', ({ root, previous }) => {
    expect(rootRefusal(root, previous, held, NOW)).toBeNull();
  });

  const unheld = generateTufKey();
  it.each([
    {
      name: 'a first root that is not version 1',
      root: signedBy({ ...first, version: 2 }, a, b),
      previous: null,
      refusal: 'root version 2 refused: the first root must be version 1',
    },
    {
      name: 'a version that does not follow the current one',
      root: signedBy({ ...second, version: 3 }, a, b, d, e),
      previous: first,
      refusal:
        'root version 3 refused: the current root is version 1, so the next must be 2: draft it with boardfleet keys draft-root',
    },
    {
      name: 'an expired root',
      root: signedBy({ ...first, expires: '2026-12-19T00:00:00Z' }, a, b),
      previous: null,
      refusal: 'root version 1 refused: it expired at 2026-12-19T00:00:00Z',
    },
    {
      name: 'a root without consistent snapshots',
      root: signedBy({ ...first, consistent_snapshot: false }, a, b),
      previous: null,
      refusal: /consistent_snapshot must be true/,
    },
    {
      name: 'a key filed under another key id',
      root: signedBy({ ...first, keys: { ...first.keys, [id(a)]: tufKeyOf(d) } }, a, b),
      previous: null,
      refusal: `root version 1 refused: key id ${id(a)} is not the sha256 of its key (that is ${id(d)})`,
    },
    {
      name: 'a root threshold above its keys',
      root: signedBy({ ...first, roles: { ...first.roles, root: { keyids: [id(a)], threshold: 2 } } }, a, b),
      previous: null,
      refusal: "root version 1 refused: the root role's threshold 2 is more than its 1 key(s)",
    },
    {
      name: 'an online key the server does not hold',
      root: signedBy(
        {
          ...first,
          keys: { ...first.keys, [id(unheld)]: tufKeyOf(unheld) },
          roles: { ...first.roles, snapshot: { keyids: [id(unheld)], threshold: 1 } },
        },
        a,
        b,
      ),
      previous: null,
      refusal: `root version 1 refused: the snapshot role names key ${id(unheld)}, which is not a key the server holds for snapshot (it holds ${id(online.snapshot)}): draft it with boardfleet keys draft-root`,
    },
    {
      name: 'a key of another online role',
      root: signedBy(
        { ...first, roles: { ...first.roles, timestamp: { keyids: [id(online.snapshot)], threshold: 1 } } },
        a,
        b,
      ),
      previous: null,
      refusal: /the timestamp role names key \w+, which is not a key the server holds for timestamp/,
    },
    {
      name: 'two keys for an online role',
      root: signedBy(
        {
          ...first,
          keys: { ...first.keys, [id(rotatedTargets)]: tufKeyOf(rotatedTargets) },
          roles: {
            ...first.roles,
            targets: { keyids: [id(online.targets), id(rotatedTargets)], threshold: 1 },
          },
        },
        a,
        b,
      ),
      previous: null,
      refusal:
        'root version 1 refused: the targets role must name one key with threshold 1: the server signs targets with one key',
    },
    {
      name: 'a root key the server holds online',
      root: signedBy(
        {
          ...first,
          roles: { ...first.roles, root: { keyids: [id(a), id(online.targets)], threshold: 1 } },
        },
        a,
      ),
      previous: null,
      refusal: `root version 1 refused: root key ${id(online.targets)} is one of the server's online keys: root keys stay offline`,
    },
    {
      name: 'two signatures by one key',
      root: {
        signed: first,
        signatures: [signatureBy(first, a), signatureBy(first, a), signatureBy(first, b)],
      },
      previous: null,
      refusal: `root version 1 refused: it carries two signatures by key ${id(a)}`,
    },
    {
      name: 'a root its own threshold did not sign',
      root: signedBy(first, a, d),
      previous: null,
      refusal: 'root version 1 refused: signed by 1 of its own root keys; it needs 2',
    },
    {
      name: 'a new root the old threshold did not sign',
      root: signedBy(second, a, d, e),
      previous: first,
      refusal:
        "root version 2 refused: signed by 1 of version 1's root keys; it needs 2, since devices trust a new root only on the word of the old one",
    },
    {
      name: 'a new root only the old keys signed',
      root: signedBy(second, a, b, c),
      previous: first,
      refusal: 'root version 2 refused: signed by 0 of its own root keys; it needs 2',
    },
  ])('refuses $name, saying which check failed', ({ root, previous, refusal }) => {
    const answer = rootRefusal(root, previous, held, NOW);
    if (typeof refusal === 'string') expect(answer).toBe(refusal);
    else expect(answer).toMatch(refusal);
  });
});
