import { describe, expect, it } from 'vitest';
import type { DesiredState } from '../../protocol/schemas.ts';
import { rollbackOrdersOf } from './rollback-orders.ts';
import type { RolloutStep } from './rollout-steps.ts';

const deployment = (version: string, rollbackOrder: string | null = null) =>
  ({
    id: `dep-${version}`,
    strategy: 'app-bundle',
    artifact: 'hello',
    version,
    sha256: 'a'.repeat(64),
    size: 1,
    url: '/x',
    manifest: '{}',
    signature: '',
    rollbackOrder,
  }) as const;
const send = (deviceId: string, version: string, order: string | null): RolloutStep => ({
  kind: 'send-desired',
  deviceId,
  deployment: deployment(version, order),
  at: 0,
});
const desired = (entries: Record<string, string>) =>
  new Map<string, DesiredState>(
    Object.entries(entries).map(([deviceId, version]) => [
      deviceId,
      { version: 1, issuedAt: 0, deployment: deployment(version) },
    ]),
  );

describe('the rollback orders a plan needs signed', () => {
  it('names each order once, from the version the rollout sent to the one gone back to', () => {
    const orders = rollbackOrdersOf(
      [send('a', '1.0.0', 'ro-1.x'), send('b', '1.0.0', 'ro-1.x'), send('c', '2.0.0', null)],
      desired({ a: '2.0.0', b: '2.0.0', c: '1.0.0' }),
    );
    expect([...orders]).toEqual([['ro-1.x', { from: '2.0.0', to: '1.0.0' }]]);
  });

  it('needs none for a device sent back to the version its desired state already names', () => {
    expect(rollbackOrdersOf([send('a', '1.0.0', 'ro-1.x')], desired({ a: '1.0.0' })).size).toBe(0);
    expect(rollbackOrdersOf([send('a', '1.0.0', 'ro-1.x')], desired({})).size).toBe(0);
  });
});
