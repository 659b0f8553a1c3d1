import { describe, expect, it } from 'vitest';
import { refusalOf } from './signed-target-check.ts';

const sha = 'a'.repeat(64);
const deployment = { artifact: 'hello', version: '1.0.0', sha256: sha, size: 100 };
const signed = { length: 100, sha256: sha, name: 'hello', version: '1.0.0' };
const base = { deployment, signed, deviceId: 'dev-1', runningVersion: null, rollbackOrder: null };
const order = (
  fields: Partial<{ device: string | null; release: string | null; from: string; to: string }>,
) => ({
  id: 'ro-1.abc',
  signed: { device: null, release: 'hello-2', from: '2.0.0', to: '1.0.0', ...fields },
});

describe('what targets metadata must sign before an install', () => {
  it.each([
    ['the signed target, no downgrade', base, null],
    ['an upgrade', { ...base, runningVersion: '0.9.0' }, null],
    ['no target at all (arbitrary software)', { ...base, signed: null }, /no signed target for hello 1.0.0/],
    [
      'another hash',
      { ...base, signed: { ...signed, sha256: 'b'.repeat(64) } },
      /says sha256 b+: the deployment/,
    ],
    ['another length', { ...base, signed: { ...signed, length: 99 } }, /says length 99/],
    [
      'a downgrade with no order',
      { ...base, runningVersion: '2.0.0' },
      /older than the running 2.0.0 and no signed rollback order/,
    ],
    [
      'a downgrade whose order is not signed',
      { ...base, runningVersion: '2.0.0', rollbackOrder: { id: 'ro-x', signed: null } },
      /ro-x is not in the fleet's signed targets/,
    ],
    [
      'a downgrade with a release order',
      { ...base, runningVersion: '2.0.0', rollbackOrder: order({}) },
      null,
    ],
    [
      "a downgrade with this device's order",
      { ...base, runningVersion: '2.0.0', rollbackOrder: order({ device: 'dev-1', release: null }) },
      null,
    ],
    [
      "another device's order",
      { ...base, runningVersion: '2.0.0', rollbackOrder: order({ device: 'dev-2', release: null }) },
      /is for device dev-2/,
    ],
    [
      'an order for other versions',
      { ...base, runningVersion: '3.0.0', rollbackOrder: order({}) },
      /allows 2.0.0 → 1.0.0, not 3.0.0 → 1.0.0/,
    ],
  ])('%s', (_name, input, expected) => {
    const refusal = refusalOf(input);
    if (expected === null) expect(refusal).toBeNull();
    else expect(refusal).toMatch(expected);
  });
});
