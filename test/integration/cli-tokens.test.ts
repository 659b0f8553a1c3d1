import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import type { CreatedOperatorToken, TokenInfo } from '../../protocol/api/session.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const CLI = new URL('../../cli/boardfleet.js', import.meta.url).pathname;
const DAY_MS = 24 * 60 * 60 * 1000;

describe('boardfleet tokens against a real server', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const cli = (...args: string[]) =>
    run(process.execPath, [CLI, 'tokens', ...args], {
      env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
    });
  const failing = (...args: string[]) =>
    cli(...args).then(
      () => {
        throw new Error(`boardfleet tokens ${args.join(' ')} succeeded`);
      },
      (error: { code: number; stdout: string; stderr: string }) => error,
    );

  it('creates tokens with an expiry, uses and fixed board and tags, lists them and revokes one', async () => {
    const before = Date.now();
    const { stdout: operatorJson } = await cli(
      'create-operator',
      'ci',
      '--role',
      'viewer',
      '--expires',
      '30d',
      '--json',
    );
    const operator = JSON.parse(operatorJson) as CreatedOperatorToken;
    expect(operator.expiresAt).toBeGreaterThanOrEqual(before + 30 * DAY_MS);
    const { stdout: provisioningJson } = await cli(
      'create-provisioning',
      '--name',
      'lab',
      '--expires',
      '12h',
      '--max-uses',
      '2',
      '--board',
      'rpi-4b',
      '--tag',
      'lab',
      '--tags',
      'site:berlin,rack-1',
      '--json',
    );
    const provisioning = JSON.parse(provisioningJson) as CreatedProvisioningToken;
    expect(provisioning).toMatchObject({
      maxUses: 2,
      board: 'rpi-4b',
      tags: ['lab', 'site:berlin', 'rack-1'],
    });

    const { stdout: table } = await cli('list');
    expect(table).toMatch(/^ID\s+KIND\s+NAME\s+ROLE\s+STATE\s+CREATED\s+EXPIRES\s+USES\s+FIXES$/m);
    expect(table).toMatch(new RegExp(`^${operator.id}\\s+operator\\s+ci\\s+viewer\\s+active\\s+`, 'm'));
    expect(table).toMatch(
      new RegExp(
        `^${provisioning.id}\\s+provisioning\\s+lab\\s+-\\s+active\\s+.*\\s0/2\\s+board rpi-4b; tags lab,site:berlin,rack-1$`,
        'm',
      ),
    );
    for (const secret of [operator.token, provisioning.token, server.adminToken])
      expect(table).not.toContain(secret);

    const { stdout: revokedText } = await cli('revoke', provisioning.id);
    expect(revokedText).toBe(`Revoked provisioning token ${provisioning.id} (lab)\n`);
    const { stdout: listJson } = await cli('list', '--json');
    const listed = JSON.parse(listJson) as TokenInfo[];
    expect(listed.find((token) => token.id === provisioning.id)?.state).toBe('revoked');
    expect(listed.find((token) => token.id === operator.id)?.state).toBe('active');
    const refused = await fetch(`${server.httpUrl}/api/v1/provision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${provisioning.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'too-late' }),
    });
    expect(refused.status).toBe(401);
  });

  it('refuses an expiry that is not a duration before asking the server', async () => {
    const failed = await failing('create-operator', 'bad', '--expires', '30 days');
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('--expires 30 days: use minutes, hours or days such as 90m, 12h or 30d');
    const badUses = await failing('create-provisioning', '--max-uses', '0');
    expect(badUses.stderr).toContain('--max-uses 0');
  });

  it('says why the last admin token cannot be revoked', async () => {
    const { stdout } = await cli('list', '--json');
    const admin = (JSON.parse(stdout) as TokenInfo[]).find((token) => token.role === 'admin') as TokenInfo;
    const failed = await failing('revoke', admin.id);
    expect(failed.stderr).toContain('(409)');
    expect(failed.stderr).toContain('last active admin token');
  });
});
