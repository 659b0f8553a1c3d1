import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { operations } from '../../protocol/api/operations.ts';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import type { CreatedOperatorToken, TokenInfo, TokenList } from '../../protocol/api/session.ts';
import { databaseBackends } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

describe.each(databaseBackends)('tokens on $name', (backend) => {
  let server: TestServer;
  /** The admin token the calls use: the test that revokes the first one switches to its successor. */
  let adminToken: string;

  beforeAll(async () => {
    server = await startTestServer(backend);
    adminToken = server.adminToken;
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const api = <T = unknown>(method: string, path: string, body?: unknown, token = adminToken) =>
    server.api<T>(method, path, body, token);

  const createOperator = async (name: string, role: string, expiresIn?: string) => {
    const created = await api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
      name,
      role,
      ...(expiresIn ? { expiresIn } : {}),
    });
    expect(created.status).toBe(201);
    return created.body;
  };

  const createProvisioning = async (body: Record<string, unknown>) => {
    const created = await api<CreatedProvisioningToken>('POST', '/api/v1/provisioning-tokens', body);
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return created.body;
  };

  const listed = async (id: string) =>
    (await api<TokenList>('GET', '/api/v1/tokens')).body.tokens.find((token) => token.id === id);

  const provision = (token: string, body: Record<string, unknown>) =>
    fetch(`${server.httpUrl}/api/v1/provision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then(async (response) => ({
      status: response.status,
      body: (await response.json()) as { deviceId?: string; message?: string },
    }));

  /** Moves a token's expiry into the past, as the clock passing it would. */
  const expire = (table: 'operator_tokens' | 'provisioning_tokens', id: string) =>
    server.db
      .updateTable(table)
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', id)
      .execute();

  describe('listing and revoking', () => {
    it('lists both kinds with kind, role, state, times and uses, and never a secret', async () => {
      const before = Date.now();
      const operator = await createOperator('ci', 'operator', '30d');
      expect(operator.expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY_MS);
      expect(operator.expiresAt).toBeLessThanOrEqual(Date.now() + 30 * DAY_MS);
      const provisioning = await createProvisioning({
        name: 'lab',
        expiresIn: '12h',
        maxUses: 5,
        board: 'rpi-4b',
        tags: ['lab', 'site:berlin'],
      });

      const response = await api<TokenList>('GET', '/api/v1/tokens');
      expect(response.status).toBe(200);
      expect(operations.listTokens.response.schema.parse(response.body)).toEqual(response.body);
      const text = JSON.stringify(response.body);
      for (const secret of [operator.token, provisioning.token, server.adminToken])
        expect(text).not.toContain(secret);
      expect(response.body.tokens.find((token) => token.id === operator.id)).toEqual({
        id: operator.id,
        kind: 'operator',
        name: 'ci',
        role: 'operator',
        state: 'active',
        createdAt: expect.any(Number),
        expiresAt: operator.expiresAt,
        revokedAt: null,
        uses: null,
        maxUses: null,
        board: null,
        tags: null,
      });
      expect(response.body.tokens.find((token) => token.id === provisioning.id)).toMatchObject({
        kind: 'provisioning',
        name: 'lab',
        role: null,
        state: 'active',
        expiresAt: provisioning.expiresAt,
        uses: 0,
        maxUses: 5,
        board: 'rpi-4b',
        tags: ['lab', 'site:berlin'],
      });
      expect(
        response.body.tokens.filter((token) => token.kind === 'operator' && token.role === 'admin'),
      ).toHaveLength(1);
    });

    it('refuses an expiry that is not a duration, naming the form', async () => {
      for (const expiresIn of ['30', '1y', '0d', '3651d', '-5m']) {
        const refused = await api<{ message: string }>('POST', '/api/v1/operator-tokens', {
          name: 'bad',
          role: 'viewer',
          expiresIn,
        });
        expect(refused.status, expiresIn).toBe(400);
        expect(refused.body.message).toContain('expiresIn');
      }
      const refused = await api('POST', '/api/v1/provisioning-tokens', { expiresIn: '2w' });
      expect(refused.status).toBe(400);
    });

    it('stops a revoked operator token at once, and lets only an admin list or revoke', async () => {
      const viewer = await createOperator('wall', 'viewer');
      const operator = await createOperator('ops', 'operator');
      expect((await api('GET', '/api/v1/me', undefined, viewer.token)).status).toBe(200);
      expect((await api('GET', '/api/v1/tokens', undefined, operator.token)).status).toBe(403);
      expect((await api('DELETE', `/api/v1/tokens/${viewer.id}`, undefined, operator.token)).status).toBe(
        403,
      );
      expect((await listed(viewer.id))?.state).toBe('active');

      const revoked = await api<TokenInfo>('DELETE', `/api/v1/tokens/${viewer.id}`);
      expect(revoked.status).toBe(200);
      expect(operations.revokeToken.response.schema.parse(revoked.body)).toEqual(revoked.body);
      expect(revoked.body).toMatchObject({ id: viewer.id, state: 'revoked', revokedAt: expect.any(Number) });
      const after = await api<{ message: string }>('GET', '/api/v1/me', undefined, viewer.token);
      expect(after.status).toBe(401);
      expect(after.body.message).toContain('revoked');
      expect((await api('DELETE', '/api/v1/tokens/tok-000000000000')).status).toBe(404);
    });

    it('stops an expired operator token at once', async () => {
      const token = await createOperator('short', 'viewer', '90m');
      expect((await api('GET', '/api/v1/me', undefined, token.token)).status).toBe(200);
      await expire('operator_tokens', token.id);
      expect((await api('GET', '/api/v1/me', undefined, token.token)).status).toBe(401);
      expect((await listed(token.id))?.state).toBe('expired');
    });

    it('refuses to revoke the last active admin token, and allows it once there is another', async () => {
      const admins = (await api<TokenList>('GET', '/api/v1/tokens')).body.tokens.filter(
        (token) => token.role === 'admin' && token.state === 'active',
      );
      expect(admins).toHaveLength(1);
      const first = admins[0] as TokenInfo;
      const refused = await api<{ code: string; message: string }>('DELETE', `/api/v1/tokens/${first.id}`);
      expect(refused.status).toBe(409);
      expect(refused.body.message).toContain('last active admin token');
      expect((await api('GET', '/api/v1/me')).status).toBe(200);

      // An expired admin token does not count as another one.
      const expired = await createOperator('expired admin', 'admin', '1d');
      await expire('operator_tokens', expired.id);
      expect((await api('DELETE', `/api/v1/tokens/${first.id}`)).status).toBe(409);

      const second = await createOperator('second admin', 'admin');
      // Revoking the token in use is allowed: the caller signs itself out.
      const own = await api<TokenInfo>('DELETE', `/api/v1/tokens/${first.id}`);
      expect(own.status).toBe(200);
      expect((await api('GET', '/api/v1/me')).status).toBe(401);
      adminToken = second.token;
      expect((await api('DELETE', `/api/v1/tokens/${second.id}`)).status).toBe(409);
    });
  });

  describe('provisioning tokens', () => {
    it('registers exactly max-uses devices of many concurrent registrations', async () => {
      const maxUses = 3;
      const token = await createProvisioning({ name: 'batch', maxUses });
      const results = await Promise.all(
        Array.from({ length: maxUses + 7 }, (_, index) => provision(token.token, { name: `batch-${index}` })),
      );
      const statuses = results.map((result) => result.status).sort();
      expect(statuses).toEqual([...Array(maxUses).fill(201), ...Array(7).fill(401)]);
      const registered = await server.db
        .selectFrom('devices')
        .select('id')
        .where('name', 'like', 'batch-%')
        .execute();
      expect(registered).toHaveLength(maxUses);
      expect(await listed(token.id)).toMatchObject({ uses: maxUses, maxUses, state: 'used-up' });
      expect((await provision(token.token, { name: 'one-more' })).status).toBe(401);
    });

    it('stops a revoked or expired provisioning token at once', async () => {
      const revoked = await createProvisioning({ name: 'to-revoke' });
      expect((await provision(revoked.token, { name: 'before-revoke' })).status).toBe(201);
      expect((await api('DELETE', `/api/v1/tokens/${revoked.id}`)).status).toBe(200);
      expect((await provision(revoked.token, { name: 'after-revoke' })).status).toBe(401);

      const expiring = await createProvisioning({ name: 'to-expire', expiresIn: '90m' });
      await expire('provisioning_tokens', expiring.id);
      const refused = await provision(expiring.token, { name: 'after-expiry' });
      expect(refused.status).toBe(401);
      expect(refused.body.message).toContain('expired');
      expect((await listed(expiring.id))?.state).toBe('expired');
      const names = (await server.db.selectFrom('devices').select('name').execute()).map((row) => row.name);
      expect(names).toContain('before-revoke');
      expect(names).not.toContain('after-revoke');
      expect(names).not.toContain('after-expiry');
    });

    it('gives every device the board and tags the token fixes, and refuses others without counting a use', async () => {
      const token = await createProvisioning({
        name: 'fixed',
        board: 'rpi-4b',
        tags: ['lab', 'site:berlin'],
        maxUses: 10,
      });
      const plain = await provision(token.token, { name: 'fixed-plain' });
      const repeated = await provision(token.token, { name: 'fixed-repeat', board: 'rpi-4b', tags: ['lab'] });
      expect([plain.status, repeated.status]).toEqual([201, 201]);
      for (const id of [plain.body.deviceId, repeated.body.deviceId]) {
        const device = await api<{ board: string; tags: string[] }>('GET', `/api/v1/devices/${id}`);
        expect(device.body.board).toBe('rpi-4b');
        expect([...device.body.tags].sort()).toEqual(['lab', 'site:berlin']);
      }

      const otherBoard = await provision(token.token, { name: 'fixed-other-board', board: 'uno' });
      expect(otherBoard.status).toBe(403);
      expect(otherBoard.body.message).toContain('board rpi-4b, not uno');
      const otherTag = await provision(token.token, { name: 'fixed-other-tag', tags: ['lab', 'canary'] });
      expect(otherTag.status).toBe(403);
      expect(otherTag.body.message).toContain('does not allow canary');
      const names = (await server.db.selectFrom('devices').select('name').execute()).map((row) => row.name);
      expect(names).not.toContain('fixed-other-board');
      expect(names).not.toContain('fixed-other-tag');
      expect((await listed(token.id))?.uses).toBe(2);
    });

    it('leaves board and tags to the agent when the token fixes none', async () => {
      const token = await createProvisioning({ name: 'open' });
      const created = await provision(token.token, { name: 'open-device', board: 'uno', tags: ['canary'] });
      expect(created.status).toBe(201);
      const device = await api<{ board: string; tags: string[] }>(
        'GET',
        `/api/v1/devices/${created.body.deviceId}`,
      );
      expect(device.body).toMatchObject({ board: 'uno', tags: ['canary'] });
    });
  });
});
