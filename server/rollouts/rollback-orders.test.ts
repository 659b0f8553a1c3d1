import { describe, expect, it } from 'vitest';
import type { DesiredState } from '../../protocol/schemas.ts';
import { rollbackOrderId, rollbackTo } from './desired-deployment.ts';
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

describe('the rollback orders of a composite deployment', () => {
  const part = (artifact: string, version: string, sha: string, rollbackOrder: string | null = null) =>
    ({
      strategy: 'mcu-serial',
      artifact,
      version,
      sha256: sha.repeat(64),
      size: 1,
      url: '/y',
      manifest: '{}',
      signature: '',
      rollbackOrder,
    }) as const;
  const composite = (app: string, firmware: string) => ({
    ...deployment(app),
    sha256: (app === '1.0.0' ? 'a' : 'b').repeat(64),
    parts: [part('firmware', firmware, firmware === '1.0.0' ? 'c' : 'd')],
  });

  it('names one order per part, each from the version the rollout sent of that artifact', () => {
    const previous = rollbackTo('ro-1', composite('1.0.0', '1.0.0'));
    const orders = rollbackOrdersOf(
      [{ kind: 'send-desired', deviceId: 'a', deployment: previous, at: 0 }],
      new Map([['a', { version: 2, issuedAt: 0, deployment: composite('2.0.0', '3.0.0') }]]),
    );
    expect([...orders]).toEqual([
      [rollbackOrderId('ro-1', previous), { from: '2.0.0', to: '1.0.0' }],
      [rollbackOrderId('ro-1', previous.parts![0]!), { from: '3.0.0', to: '1.0.0' }],
    ]);
  });

  it('needs no order for a part the device runs unchanged, nor for one it never had', () => {
    const previous = rollbackTo('ro-1', composite('1.0.0', '1.0.0'));
    const sent = { kind: 'send-desired', deviceId: 'a', deployment: previous, at: 0 } as const;
    const sameFirmware = rollbackOrdersOf(
      [sent],
      new Map([['a', { version: 2, issuedAt: 0, deployment: composite('2.0.0', '1.0.0') }]]),
    );
    expect([...sameFirmware.values()]).toEqual([{ from: '2.0.0', to: '1.0.0' }]);
    const appOnlyBefore = rollbackOrdersOf(
      [sent],
      new Map([['a', { version: 2, issuedAt: 0, deployment: deployment('2.0.0') }]]),
    );
    expect([...appOnlyBefore.values()]).toEqual([{ from: '2.0.0', to: '1.0.0' }]);
  });
});
