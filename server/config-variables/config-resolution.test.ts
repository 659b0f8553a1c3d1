import { describe, expect, it } from 'vitest';
import { configHash, desiredConfig } from '../../protocol/device-config-hash.ts';
import { resolveVariables, type StoredVariable, type VariableLayers } from './config-resolution.ts';

const at = (scope: StoredVariable['scope'], target: string, name: string, value: string, secret = false) =>
  ({ scope, target, name, value, secret, updatedAt: 0, updatedBy: 'admin' }) satisfies StoredVariable;

const layers: VariableLayers = {
  fleet: [
    at('fleet', '', 'LEVEL', 'fleet'),
    at('fleet', '', 'ONLY_FLEET', 'f'),
    at('fleet', '', 'TOKEN', 's3', true),
  ],
  byTag: new Map([
    ['bench', [at('tag', 'bench', 'LEVEL', 'bench'), at('tag', 'bench', 'ORDER', 'bench')]],
    ['alpha', [at('tag', 'alpha', 'ORDER', 'alpha'), at('tag', 'alpha', 'ONLY_ALPHA', 'a')]],
  ]),
  byDevice: new Map([['dev-1', [at('device', 'dev-1', 'LEVEL', 'device')]]]),
};

describe('resolving a device’s effective variables', () => {
  it('overrides the fleet by its tags and the tags by the device, naming where each value comes from', () => {
    expect(resolveVariables(layers, 'dev-1', ['bench'])).toEqual([
      { name: 'LEVEL', value: 'device', secret: false, source: 'device' },
      { name: 'ONLY_FLEET', value: 'f', secret: false, source: 'fleet' },
      { name: 'ORDER', value: 'bench', secret: false, source: 'tag:bench' },
      { name: 'TOKEN', value: 's3', secret: true, source: 'fleet' },
    ]);
    expect(resolveVariables(layers, 'dev-2', ['bench']).find((v) => v.name === 'LEVEL')?.source).toBe(
      'tag:bench',
    );
    expect(resolveVariables(layers, 'dev-2', []).find((v) => v.name === 'LEVEL')?.source).toBe('fleet');
  });

  it('applies several tags in alphabetical order, the later tag winning, whatever order the device lists them', () => {
    for (const tags of [
      ['alpha', 'bench'],
      ['bench', 'alpha'],
    ]) {
      const order = resolveVariables(layers, 'dev-2', tags).find((variable) => variable.name === 'ORDER');
      expect(order).toEqual({ name: 'ORDER', value: 'bench', secret: false, source: 'tag:bench' });
    }
  });

  it('ignores tags that have no variables and devices that have none', () => {
    expect(resolveVariables({ fleet: [], byTag: new Map(), byDevice: new Map() }, 'dev-9', ['lab'])).toEqual(
      [],
    );
  });
});

describe('the config hash', () => {
  it('does not depend on the order of the variables and changes with any value', () => {
    expect(configHash({ A: '1', B: '2' })).toBe(configHash({ B: '2', A: '1' }));
    expect(configHash({ A: '1', B: '2' })).not.toBe(configHash({ A: '1', B: '3' }));
    // A value moved into a name does not collide: the pairs are hashed, not their concatenation.
    expect(configHash({ AB: '' })).not.toBe(configHash({ A: 'B' }));
    expect(desiredConfig({ A: '1' }).hash).toBe(configHash({ A: '1' }));
  });
});
