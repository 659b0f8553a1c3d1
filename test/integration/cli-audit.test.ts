import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEntry } from '../../protocol/api/audit.ts';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import type { CreatedOperatorToken } from '../../protocol/api/session.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

describe('boardfleet audit against a real server', () => {
  let server: TestServer;
  let cli: CliRunner;
  let ci: CreatedOperatorToken;
  let device: CreatedDevice;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    ci = (
      await server.api<CreatedOperatorToken>('POST', '/api/v1/operator-tokens', {
        name: 'ci',
        role: 'operator',
      })
    ).body;
    // Through the CLI as the ci token, then as the admin: one change that works, and one refused.
    const asCi = cliRunner({ url: server.httpUrl, token: ci.token });
    device = JSON.parse((await asCi.ok('devices', 'add', 'bench-pi', '--tag', 'lab', '--json')).stdout);
    await cli.ok('devices', 'revoke', device.device.id);
    await cli.failing('rollout', 'approve', 'ro-missing');
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('prints the log newest first, one row per action, with the reason a refused one failed', async () => {
    const { stdout } = await cli.ok('audit');
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TIME\s+ACTOR\s+ACTION\s+TARGET\s+DETAIL\s+OUTCOME$/);
    const time = '\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}';
    expect(lines.slice(1, 4)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^${time}\\s+admin\\s+rollout\\.approve\\s+ro-missing\\s+-\\s+failed: rollout ro-missing not found$`,
        ),
      ),
      expect.stringMatching(
        new RegExp(`^${time}\\s+admin\\s+device\\.revoke\\s+${device.device.id}\\s+name bench-pi\\s+ok$`),
      ),
      expect.stringMatching(
        new RegExp(
          `^${time}\\s+ci\\s+device\\.create\\s+${device.device.id}\\s+name bench-pi, tags lab\\s+ok$`,
        ),
      ),
    ]);
    expect(stdout).not.toContain(device.secret);
  });

  it('filters by actor and time, and prints JSON for scripts', async () => {
    const byCi = JSON.parse((await cli.ok('audit', '--actor', 'ci', '--json')).stdout) as AuditEntry[];
    expect(byCi).toEqual([
      {
        id: expect.any(Number),
        at: expect.any(Number),
        actor: 'ci',
        actorTokenId: ci.id,
        via: 'token',
        action: 'device.create',
        target: device.device.id,
        outcome: 'ok',
        detail: 'name bench-pi, tags lab',
        reason: null,
      },
    ]);
    expect(JSON.parse((await cli.ok('audit', '--actor', ci.id, '--json')).stdout)).toEqual(byCi);

    const recent = JSON.parse((await cli.ok('audit', '--since', '2h', '--json')).stdout) as AuditEntry[];
    expect(recent.map((entry) => entry.action)).toEqual([
      'rollout.approve',
      'device.revoke',
      'device.create',
      'operator-token.create',
    ]);
    const fromCreation = new Date(byCi[0]?.at as number).toISOString();
    const after = JSON.parse(
      (await cli.ok('audit', '--since', fromCreation, '--json')).stdout,
    ) as AuditEntry[];
    expect(after.map((entry) => entry.action)).toEqual(['rollout.approve', 'device.revoke', 'device.create']);
    expect((await cli.ok('audit', '--since', '2099-01-01')).stdout).toBe('(none)\n');
  });

  it('refuses a --since it cannot read before asking the server, saying what it takes', async () => {
    const failed = await cli.failing('audit', '--since', 'yesterday');
    expect(failed.stderr).toContain('--since yesterday: use a duration back from now (30m, 2h, 7d)');
    const unreachable = cliRunner({ url: 'http://127.0.0.1:9', token: server.adminToken });
    expect((await unreachable.failing('audit', '--since', 'yesterday')).stderr).toContain(
      '--since yesterday',
    );
  });
});
