import { describe, expect, it } from 'vitest';
import { requiredRole } from '../../protocol/api/operation.ts';
import { type OperationId, operations } from '../../protocol/api/operations.ts';
import { AUDIT_RULES, type AuditActor, auditEntry, auditRuleFor, type AuditRule } from './audit-rules.ts';

const writes = (Object.keys(operations) as OperationId[]).filter((id) => operations[id].method !== 'get');
const rules = AUDIT_RULES as Record<string, AuditRule | { notAudited: string }>;
const admin: AuditActor = { name: 'admin', tokenId: 'tok-admin', via: 'token' };

/** The writes that are not an operator's action, each for a reason that must stay true. */
const NOT_OPERATOR_ACTIONS: Partial<Record<OperationId, (typeof operations)[OperationId]['access']>> = {
  uploadConsole: 'device',
  requestDeviceCertificate: 'device',
  provision: 'provisioning-token',
  signIn: 'public',
  signOut: 'public',
  // Reads chunks with a POST (the positions are a list): a device's or an operator's, changing nothing.
  fetchArtifactChunks: 'operator-or-device',
};
/** Operator writes that change nothing. */
const CHANGE_NOTHING: OperationId[] = ['previewRollout'];

function rule(id: OperationId): AuditRule {
  const found = auditRuleFor(operations[id]);
  if (!found) throw new Error(`${id} is not audited`);
  return found;
}

describe('the audit rules', () => {
  it('decide for every operation that is not a read, and only for those', () => {
    expect(Object.keys(rules).sort()).toEqual([...writes].sort());
    for (const id of Object.keys(operations) as OperationId[])
      if (operations[id].method === 'get') expect(auditRuleFor(operations[id]), id).toBeNull();
  });

  it.each(writes)('audit %s when an operator calls it, or say why not', (id) => {
    const decided = rules[id];
    if (decided && 'notAudited' in decided) {
      expect(decided.notAudited.length, id).toBeGreaterThan(20);
      expect(auditRuleFor(operations[id])).toBeNull();
      // Left out only when no operator calls it, or when it changes nothing.
      if (CHANGE_NOTHING.includes(id)) expect(requiredRole(operations[id].access)).not.toBeNull();
      else expect(operations[id].access).toBe(NOT_OPERATOR_ACTIONS[id]);
    } else {
      // The guard has identified an operator before the handler runs: every entry has its actor.
      expect(requiredRole(operations[id].access), id).not.toBeNull();
      expect(auditRuleFor(operations[id])).toBe(decided);
    }
  });

  it('make an entry from what the call asked and answered, and never copy a secret', () => {
    const created = auditEntry(
      rule('createOperatorToken'),
      {
        params: {},
        query: {},
        body: { name: 'ci', role: 'viewer', expiresIn: '30d' },
        result: { id: 'tok-ci', token: 'bft_secret', expiresAt: 99 },
      },
      admin,
      null,
      1_000,
    );
    expect(created).toEqual({
      at: 1_000,
      actor: 'admin',
      actorTokenId: 'tok-admin',
      via: 'token',
      action: 'operator-token.create',
      target: 'tok-ci',
      outcome: 'ok',
      detail: 'name ci, role viewer, expiresIn 30d',
      reason: null,
    });
    expect(JSON.stringify(created)).not.toContain('bft_secret');

    const device = auditEntry(
      rule('createDevice'),
      {
        params: {},
        query: {},
        body: { name: 'kitchen-pi', tags: ['lab', 'site:berlin'], secret: 'never read' },
        result: {
          device: { id: 'dev-1' } as never,
          secret: 'bfd_secret',
        },
      },
      admin,
      null,
      1_000,
    );
    expect([device.target, device.detail]).toEqual(['dev-1', 'name kitchen-pi, tags lab,site:berlin']);
    expect(JSON.stringify(device)).not.toMatch(/bfd_secret|never read/);
  });

  it('record a failure with the reason, and a create that failed without a target', () => {
    const failed = auditEntry(
      rule('createRelease'),
      { params: {}, query: {}, body: { name: 'app-1.0.0', artifacts: { '*': 'art-1' } }, result: undefined },
      { ...admin, via: 'session' },
      'artifact art-1 not found',
      2_000,
    );
    expect(failed).toMatchObject({
      via: 'session',
      action: 'release.create',
      target: null,
      outcome: 'failed',
      detail: 'name app-1.0.0, artifacts *=art-1',
      reason: 'artifact art-1 not found',
    });
  });

  it.each([
    ['pause', 'rollout.pause'],
    ['resume', 'rollout.resume'],
    ['approve', 'rollout.approve'],
    ['abort', 'rollout.abort'],
    ['explode', 'rollout.act'],
  ])('name the rollout action %s %s', (action, expected) => {
    const entry = auditEntry(
      rule('actOnRollout'),
      { params: { id: 'ro-1', action }, query: {}, body: undefined, result: undefined },
      admin,
      'refused',
      1,
    );
    expect([entry.action, entry.target]).toEqual([expected, 'ro-1']);
  });

  it('record a key ceremony by the key ids it names and that signed it, never a signature', () => {
    const id = (digit: string) => digit.repeat(64);
    const role = (...keyids: string[]) => ({ keyids, threshold: 1 });
    const root = {
      signed: {
        version: 2,
        roles: {
          root: { keyids: [id('a'), id('b')], threshold: 2 },
          targets: role(id('c')),
          snapshot: role(id('d')),
          timestamp: role(id('e')),
        },
      },
      signatures: [{ keyid: id('a'), sig: 'f'.repeat(128) }],
    };
    const entry = auditEntry(
      rule('publishTufRoot'),
      { params: {}, query: {}, body: root, result: undefined },
      admin,
      'refused',
      1,
    );
    expect([entry.action, entry.target]).toEqual(['tuf-root.publish', 'root v2']);
    expect(entry.detail).toBe(
      'root keys aaaaaaaaaaaa,bbbbbbbbbbbb threshold 2; targets cccccccccccc; snapshot dddddddddddd; timestamp eeeeeeeeeeee; signed by aaaaaaaaaaaa',
    );
    const junk = auditEntry(
      rule('publishTufRoot'),
      { params: {}, query: {}, body: 'junk', result: undefined },
      admin,
      'refused',
      1,
    );
    expect([junk.target, junk.detail]).toEqual([null, null]);
  });

  it('clip what a refused call sent, and read only plain, non-empty values from it', () => {
    const entry = auditEntry(
      rule('updateDevice'),
      {
        params: { id: 'x'.repeat(2_000) },
        query: {},
        body: { name: 'n'.repeat(10_000), tags: [{ nested: true }, 'lab'] },
        result: undefined,
      },
      admin,
      'r'.repeat(10_000),
      1,
    );
    for (const text of [entry.target, entry.detail, entry.reason]) {
      expect(text?.length).toBe(500);
      expect(text?.endsWith('…')).toBe(true);
    }
    const empty = auditEntry(
      rule('createDevice'),
      { params: {}, query: {}, body: { name: 'kitchen-pi', tags: [], board: '' }, result: undefined },
      admin,
      'refused',
      1,
    );
    expect(empty.detail).toBe('name kitchen-pi');
    const odd = auditEntry(
      rule('sendCommand'),
      { params: { id: 'dev-1' }, query: {}, body: ['not', 'an', 'object'], result: undefined },
      admin,
      'invalid',
      1,
    );
    expect(odd.detail).toBeNull();
  });
});
