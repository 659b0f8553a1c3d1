import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry, AuditLog } from '../../protocol/api/audit.ts';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import { type OperationId, operations } from '../../protocol/api/operations.ts';
import type { CreatedOperatorToken } from '../../protocol/api/session.ts';
import { CSRF_HEADER, SESSION_COOKIE } from '../../protocol/api/session.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { databaseBackends } from '../support/databases.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/**
 * The action each write of the operations table is recorded as when an operator calls it
 * (`actOnRollout` called with `pause`), and the writes that are not an operator's action. The
 * table names exactly the routes the controllers declare (openapi.contract.test.ts), so together
 * these cover every route that changes something.
 */
const RECORDED_AS: Partial<Record<OperationId, string>> = {
  createDevice: 'device.create',
  updateDevice: 'device.update',
  revokeDevice: 'device.revoke',
  deleteDevice: 'device.delete',
  sendCommand: 'device.command',
  createProvisioningToken: 'provisioning-token.create',
  createOperatorToken: 'operator-token.create',
  revokeToken: 'token.revoke',
  uploadArtifact: 'artifact.upload',
  createRelease: 'release.create',
  createRollout: 'rollout.create',
  actOnRollout: 'rollout.pause',
  createBuild: 'build.create',
  cancelBuild: 'build.cancel',
  publishTufRoot: 'tuf-root.publish',
  rotateTufOnlineKey: 'tuf-key.rotate',
  createRollbackOrder: 'rollback-order.create',
  createWebhook: 'webhook.create',
  deleteWebhook: 'webhook.delete',
  setConfigVariable: 'config.set',
  unsetConfigVariable: 'config.unset',
};
const NOT_RECORDED: OperationId[] = [
  'uploadConsole',
  'requestDeviceCertificate',
  'provision',
  'signIn',
  'signOut',
  'previewRollout',
  'fetchArtifactChunks',
];

const writes = (Object.keys(operations) as OperationId[]).filter((id) => operations[id].method !== 'get');

describe.each(databaseBackends)('the audit log on $name', (backend) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const log = async (query = '', token?: string): Promise<AuditEntry[]> => {
    const response = await server.api<AuditLog>('GET', `/api/v1/audit${query}`, undefined, token);
    expect(response.status, JSON.stringify(response.body)).toBe(200);
    expect(operations.listAuditEntries.response.schema.parse(response.body)).toEqual(response.body);
    return response.body.entries;
  };
  const newestId = async () => (await log('?limit=1'))[0]?.id ?? 0;
  /** Entries written since `after` (an id), oldest first: the order the calls were made in. */
  const since = async (after: number) =>
    (await log('?limit=1000')).filter((entry) => entry.id > after).reverse();

  it('records every write an operator makes, even one that fails, and nothing for the others', async () => {
    expect([...Object.keys(RECORDED_AS), ...NOT_RECORDED].sort()).toEqual([...writes].sort());
    for (const id of writes) {
      const before = await newestId();
      const operation = operations[id];
      const path = operation.path.replace('{action}', 'pause').replace(/\{\w+\}/g, 'audit-probe');
      // An id nothing has and a body no schema takes: each operator write is refused, and recorded.
      const response = await fetch(`${server.httpUrl}${path}`, {
        method: operation.method.toUpperCase(),
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ auditProbe: true }),
      });
      const answer = (await response.json()) as { message?: string };
      const recorded = await since(before);
      const action = RECORDED_AS[id];
      if (action === undefined) {
        expect(recorded, id).toEqual([]);
        continue;
      }
      expect(response.status, id).toBeGreaterThanOrEqual(400);
      expect(recorded, id).toEqual([
        {
          id: expect.any(Number),
          at: expect.any(Number),
          actor: 'admin',
          actorTokenId: expect.stringMatching(/^tok-/),
          via: 'token',
          action,
          target: operation.path.includes('{') ? 'audit-probe' : null,
          outcome: 'failed',
          detail: expect.toBeOneOf([null, expect.any(String)]),
          reason: answer.message,
        },
      ]);
    }
  });

  it('records who did what to what and how it ended, through a day of work', async () => {
    const before = await newestId();
    const start = Date.now();
    const ok = async <T>(method: string, path: string, body?: unknown, status = 200) => {
      const response = await server.api<T>(method, path, body);
      expect(response.status, `${method} ${path}: ${JSON.stringify(response.body)}`).toBe(status);
      return response.body;
    };
    const created = await ok<CreatedDevice>(
      'POST',
      '/api/v1/devices',
      { name: 'audit-pi', tags: ['audit'] },
      201,
    );
    const device = created.device.id;
    const refusedName = await server.api('POST', '/api/v1/devices', { name: 'audit-pi' });
    expect(refusedName.status).toBe(409);
    await ok('PATCH', `/api/v1/devices/${device}`, { name: 'audit-pi-1' });
    await ok('POST', `/api/v1/devices/${device}/commands`, { type: 'ping' }, 202);
    const ci = await ok<CreatedOperatorToken>(
      'POST',
      '/api/v1/operator-tokens',
      { name: 'ci', role: 'operator' },
      201,
    );
    await ok('DELETE', `/api/v1/tokens/${ci.id}`);
    const artifact = await uploadArtifact(server, Buffer.from('audited'), {
      name: 'audit-app',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    const release = await ok<{ id: string }>(
      'POST',
      '/api/v1/releases',
      { name: 'audit-1.0.0', artifacts: { 'rpi-4b': artifact.id } },
      201,
    );
    const rollout = (
      await ok<{ id: string }>(
        'POST',
        '/api/v1/rollouts',
        {
          release: 'audit-1.0.0',
          target: { tags: ['audit'] },
          waves: [{ percent: 100, requiresApproval: true }],
        },
        201,
      )
    ).id;
    await eventually('the wave awaits approval', async () => {
      const status = await ok<RolloutStatus>('GET', `/api/v1/rollouts/${rollout}`);
      return status.waves[0]?.state === 'awaiting-approval';
    });
    await ok('POST', `/api/v1/rollouts/${rollout}/pause`);
    await ok('POST', `/api/v1/rollouts/${rollout}/resume`);
    await ok('POST', `/api/v1/rollouts/${rollout}/approve`);
    const refusedApproval = await server.api<{ message: string }>(
      'POST',
      `/api/v1/rollouts/${rollout}/approve`,
    );
    expect(refusedApproval.status).toBe(409);
    await ok('POST', `/api/v1/rollouts/${rollout}/abort`);
    await ok('POST', `/api/v1/devices/${device}/revoke`);
    await ok('DELETE', `/api/v1/devices/${device}`);
    // Reads are not actions.
    await ok('GET', '/api/v1/devices');
    await ok('GET', `/api/v1/rollouts/${rollout}`);

    const recorded = await since(before);
    expect(
      recorded.map(({ action, target, outcome, detail }) => ({ action, target, outcome, detail })),
    ).toEqual([
      { action: 'device.create', target: device, outcome: 'ok', detail: 'name audit-pi, tags audit' },
      { action: 'device.create', target: null, outcome: 'failed', detail: 'name audit-pi' },
      { action: 'device.update', target: device, outcome: 'ok', detail: 'name audit-pi-1' },
      { action: 'device.command', target: device, outcome: 'ok', detail: 'type ping' },
      { action: 'operator-token.create', target: ci.id, outcome: 'ok', detail: 'name ci, role operator' },
      { action: 'token.revoke', target: ci.id, outcome: 'ok', detail: 'operator token ci' },
      {
        action: 'artifact.upload',
        target: artifact.id,
        outcome: 'ok',
        detail: 'name audit-app, version 1.0.0, kind app-bundle, boards rpi-4b',
      },
      {
        action: 'release.create',
        target: release.id,
        outcome: 'ok',
        detail: `name audit-1.0.0, artifacts rpi-4b=${artifact.id}`,
      },
      { action: 'rollout.create', target: rollout, outcome: 'ok', detail: 'release audit-1.0.0' },
      { action: 'rollout.pause', target: rollout, outcome: 'ok', detail: null },
      { action: 'rollout.resume', target: rollout, outcome: 'ok', detail: null },
      { action: 'rollout.approve', target: rollout, outcome: 'ok', detail: null },
      { action: 'rollout.approve', target: rollout, outcome: 'failed', detail: null },
      { action: 'rollout.abort', target: rollout, outcome: 'ok', detail: null },
      { action: 'device.revoke', target: device, outcome: 'ok', detail: 'name audit-pi-1' },
      { action: 'device.delete', target: device, outcome: 'ok', detail: 'name audit-pi-1' },
    ]);
    expect(recorded.filter((entry) => entry.outcome === 'failed').map((entry) => entry.reason)).toEqual([
      expect.stringContaining('a device named audit-pi already exists'),
      refusedApproval.body.message,
    ]);
    for (const entry of recorded) {
      expect(entry).toMatchObject({ actor: 'admin', via: 'token' });
      expect(entry.at).toBeGreaterThanOrEqual(start);
      expect(entry.at).toBeLessThanOrEqual(Date.now());
      if (entry.outcome === 'ok') expect(entry.reason).toBeNull();
    }
    // Secrets handed out are never kept.
    const text = JSON.stringify(await log('?limit=1000'));
    for (const secret of [created.secret, ci.token, server.adminToken]) expect(text).not.toContain(secret);
  });

  it("names a dashboard session's token as the actor", async () => {
    const ops = (
      await server.api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
        name: 'ops',
        role: 'operator',
      })
    ).body;
    const signIn = await fetch(`${server.httpUrl}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [CSRF_HEADER]: '1' },
      body: JSON.stringify({ token: ops.token }),
    });
    expect(signIn.status).toBe(200);
    const cookie = signIn.headers.getSetCookie()[0]?.split(';')[0] as string;
    expect(cookie).toMatch(new RegExp(`^${SESSION_COOKIE}=`));
    const before = await newestId();
    const made = await fetch(`${server.httpUrl}/api/v1/devices`, {
      method: 'POST',
      headers: { cookie, 'content-type': 'application/json', [CSRF_HEADER]: '1' },
      body: JSON.stringify({ name: 'from-the-dashboard' }),
    });
    expect(made.status).toBe(201);
    expect(await since(before)).toEqual([
      expect.objectContaining({
        actor: 'ops',
        actorTokenId: ops.id,
        via: 'session',
        action: 'device.create',
        outcome: 'ok',
      }),
    ]);
  });

  it('leaves out requests refused before they reach an action: no token, a wrong one, too low a role', async () => {
    const viewer = (
      await server.api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
        name: 'wall',
        role: 'viewer',
      })
    ).body;
    const before = await newestId();
    expect((await server.api('POST', '/api/v1/devices', { name: 'nope' }, viewer.token)).status).toBe(403);
    expect((await server.api('POST', '/api/v1/devices', { name: 'nope' }, 'bft_wrong')).status).toBe(401);
    expect((await server.api('POST', '/api/v1/devices', { name: 'nope' }, '')).status).toBe(401);
    expect(await since(before)).toEqual([]);
  });

  it('filters by time (ms or ISO) and actor (name or token id), newest first; a viewer may read it', async () => {
    const first = (await server.api<{ id: string }>('POST', '/api/v1/provisioning-tokens', { name: 'f1' }))
      .body;
    const all = await log('?limit=1000');
    const mark = all.find((entry) => entry.target === first.id) as AuditEntry;
    const later = await server.api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
      name: 'later',
      role: 'viewer',
    });

    for (const query of [`?since=${mark.at}`, `?since=${new Date(mark.at).toISOString()}`]) {
      const entries = await log(query);
      expect(entries.map((entry) => entry.target)).toEqual(expect.arrayContaining([later.body.id, first.id]));
      expect(entries.every((entry) => entry.at >= mark.at)).toBe(true);
      expect(entries.map((entry) => entry.id)).toEqual(
        [...entries.map((entry) => entry.id)].sort((a, b) => b - a),
      );
    }
    expect(await log(`?since=${Date.now() + 60_000}`)).toEqual([]);
    expect(await log('?limit=2')).toHaveLength(2);
    const byName = await log('?actor=ops');
    expect(byName.length).toBeGreaterThan(0);
    expect(byName.every((entry) => entry.actor === 'ops')).toBe(true);
    expect(await log(`?actor=${byName[0]?.actorTokenId}`)).toEqual(byName);
    expect(await log('?actor=nobody')).toEqual([]);

    const refused = await server.api<{ message: string }>('GET', '/api/v1/audit?since=yesterday');
    expect(refused.status).toBe(400);
    expect(refused.body.message).toContain('since');
    expect(await log('?limit=5', later.body.token)).toEqual(await log('?limit=5'));
  });

  it('offers no way to change or delete an entry', async () => {
    const auditRoutes = Object.values(operations).filter((operation) =>
      operation.path.startsWith('/api/v1/audit'),
    );
    expect(auditRoutes.map((operation) => operation.method)).toEqual(['get']);

    const before = await log('?limit=1000');
    const someId = before[0]?.id as number;
    for (const path of ['/api/v1/audit', `/api/v1/audit/${someId}`]) {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) {
        const response = await server.api(method, path, { outcome: 'ok', reason: null });
        expect(response.status, `${method} ${path}`).toBe(404);
      }
    }
    expect(await log('?limit=1000')).toEqual(before);
  });
});
