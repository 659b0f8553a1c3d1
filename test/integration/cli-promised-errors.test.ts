import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import type { CreatedOperatorToken, TokenInfo } from '../../protocol/api/session.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer, TLS_ON_FREE_PORTS } from '../support/test-server.ts';

/** Loading the server's or agent's modules is most of a process's start on a loaded machine. */
const START = 30_000;

const dirs: string[] = [];
const children: ChildProcess[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};
const exitCode = (child: ChildProcess) =>
  eventually('the process to exit', () => child.exitCode ?? undefined, START);
const lines = (text: string) => text.split('\n').filter((line) => line.trim() !== '');

afterAll(async () => {
  await Promise.all(children.map((child) => stopProcess(child, 'SIGKILL')));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Issue 15 item 11: errors the README promises, each seen through the real process. */
describe('a server started with MQTT_URL', () => {
  it('refuses to start without the broker credentials, in one error naming each missing variable, and writes nothing', async () => {
    const dataDir = tempDir('boardfleet-mqtt-url-');
    const child = spawn(process.execPath, [CLI, 'server'], {
      env: {
        ...process.env,
        ...TLS_ON_FREE_PORTS,
        BOARDFLEET_DATA_DIR: dataDir,
        BOARDFLEET_HTTP_HOST: '127.0.0.1',
        BOARDFLEET_MQTT_HOST: '127.0.0.1',
        BOARDFLEET_HTTP_PORT: '0',
        BOARDFLEET_MQTT_PORT: '0',
        MQTT_URL: 'mqtt://127.0.0.1:1883',
        BOARDFLEET_MQTT_ADMIN_USERNAME: 'boardfleet-admin',
        BOARDFLEET_MQTT_ADMIN_PASSWORD: '',
        BOARDFLEET_MQTT_SERVER_USERNAME: '',
        BOARDFLEET_MQTT_SERVER_PASSWORD: '',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    child.once('error', (error) => (stderr += `spawn failed: ${error.message}\n`));
    expect(await exitCode(child)).toBe(1);
    expect(lines(stderr)).toEqual([
      'boardfleet: invalid configuration:',
      '  MQTT_URL is set but BOARDFLEET_MQTT_ADMIN_PASSWORD, BOARDFLEET_MQTT_SERVER_USERNAME, ' +
        'BOARDFLEET_MQTT_SERVER_PASSWORD are not: the server needs the broker admin and its own credential ' +
        '(boardfleet broker-config mosquitto writes them in boardfleet.env)',
    ]);
    // Refused before the first start: no database, no admin token, no broker connection.
    expect(readdirSync(dataDir)).toEqual([]);
  });
});

describe('tokens through the CLI against a real server', () => {
  let server: TestServer;
  let admin: CliRunner;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    admin = cliRunner({ url: server.httpUrl, token: server.adminToken });
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('refuses an expired provisioning token to an agent, which exits with one line and registers nothing', async () => {
    const { stdout } = await admin.ok(
      'tokens',
      'create-provisioning',
      '--name',
      'soon',
      '--expires',
      '90m',
      '--json',
    );
    const token = JSON.parse(stdout) as CreatedProvisioningToken;
    // The shortest expiry is a minute and the server reads the real clock: moving the expiry into
    // the past in the database is what the clock passing it would do, without a minute's wait.
    await server.db
      .updateTable('provisioning_tokens')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', token.id)
      .execute();
    const listed = JSON.parse((await admin.ok('tokens', 'list', '--json')).stdout) as TokenInfo[];
    expect(listed.find((info) => info.id === token.id)?.state).toBe('expired');

    const dataDir = tempDir('boardfleet-expired-agent-');
    const agent = startAgentProcess([
      ...['--server', server.httpUrl, '--data-dir', dataDir, '--name', 'too-late'],
      ...['--provisioning-token-file', secretFile(token.token)],
    ]);
    children.push(agent);
    expect(await exitCode(agent)).toBe(1);
    expect(lines(agent.output())).toEqual([
      `boardfleet: ${server.httpUrl}/api/v1/provision answered 401: the provisioning token is missing, unknown, revoked, expired or used up`,
    ]);
    expect(existsSync(join(dataDir, 'credentials.json'))).toBe(false);
    const { body } = await server.api<{ devices: Array<{ name: string }> }>(
      'GET',
      '/api/v1/devices?limit=100',
    );
    expect(body.devices.map((device) => device.name)).not.toContain('too-late');
  });

  it.each(['viewer', 'operator'])(
    'refuses `tokens create-operator` to a token with the %s role, in one line naming the request',
    async (role) => {
      const { stdout } = await admin.ok('tokens', 'create-operator', `${role}-ci`, '--role', role, '--json');
      const own = JSON.parse(stdout) as CreatedOperatorToken;
      const limited = cliRunner({ url: server.httpUrl, token: own.token });
      const refused = await limited.failing('tokens', 'create-operator', 'escalated', '--role', 'admin');
      expect(refused.code).toBe(1);
      expect(refused.stdout).toBe('');
      expect(lines(refused.stderr)).toEqual([
        `boardfleet: POST /api/v1/operator-tokens failed (403): this needs the admin role; the token has ${role}`,
      ]);
      const tokens = JSON.parse((await admin.ok('tokens', 'list', '--json')).stdout) as TokenInfo[];
      expect(tokens.map((token) => token.name)).not.toContain('escalated');
    },
  );
});
