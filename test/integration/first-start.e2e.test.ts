import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer, TLS_ON_FREE_PORTS } from '../support/test-server.ts';

/** Issue 15, the first five minutes: items 1 (a port taken), 3 (provisioning twice) and 4 (LOG_LEVEL, stop line). */

const dirs: string[] = [];
const children: ChildProcess[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};
afterEach(async () => {
  await Promise.all(children.splice(0).map((child) => stopProcess(child, 'SIGKILL')));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** `boardfleet server` with `env`, its stderr kept apart from its stdout. */
function serverProcess(env: Record<string, string>) {
  const child = spawn(process.execPath, [CLI, 'server'], {
    env: {
      ...process.env,
      ...TLS_ON_FREE_PORTS,
      BOARDFLEET_DATA_DIR: tempDir('boardfleet-first-start-'),
      BOARDFLEET_HTTP_HOST: '127.0.0.1',
      BOARDFLEET_MQTT_HOST: '127.0.0.1',
      BOARDFLEET_HTTP_PORT: '0',
      BOARDFLEET_MQTT_PORT: '0',
      LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  return Object.assign(child, { stderr: () => stderr });
}

/** The exit code, failing if the process is still running after `timeoutMs`. */
const exitCode = (child: ChildProcess, timeoutMs: number) =>
  eventually('the process to exit', () => child.exitCode ?? undefined, timeoutMs);

const stderrLines = (text: string) => text.split('\n').filter((line) => line.trim() !== '');

async function squat(): Promise<Server & { port: number }> {
  const squatter = createServer();
  await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
  return Object.assign(squatter, { port: (squatter.address() as { port: number }).port });
}

describe('the server with a port taken', () => {
  it.each([
    ['MQTT', 'BOARDFLEET_MQTT_PORT'],
    ['HTTP', 'BOARDFLEET_HTTP_PORT'],
  ])('exits non-zero with one line naming %s port variable and no stack trace', async (what, variable) => {
    const squatter = await squat();
    try {
      const child = serverProcess({ [variable]: String(squatter.port) });
      // Loading the server's modules is most of this bound, on a loaded machine.
      const code = await exitCode(child, 30_000);
      expect(code).not.toBe(0);
      expect(stderrLines(child.stderr())).toEqual([
        `boardfleet: ${what} port ${squatter.port} is already in use: set ${variable} to a free port`,
      ]);
    } finally {
      squatter.close();
    }
  });
});

describe('a second server on the same SQLite database', () => {
  it('is refused in one line naming the first and PostgreSQL; once the first is killed, a new one starts', async () => {
    const dataDir = tempDir('boardfleet-shared-sqlite-');
    const owner = join(dataDir, 'boardfleet.sqlite.owner');
    const ownerPid = () => {
      try {
        return (JSON.parse(readFileSync(owner, 'utf8')) as { pid: number }).pid;
      } catch {
        return undefined;
      }
    };
    const first = serverProcess({ BOARDFLEET_DATA_DIR: dataDir });
    await eventually('the first server to claim the database', () => ownerPid() === first.pid, 30_000);

    const second = serverProcess({ BOARDFLEET_DATA_DIR: dataDir });
    expect(await exitCode(second, 30_000)).not.toBe(0);
    expect(stderrLines(second.stderr())).toEqual([
      `boardfleet: another Boardfleet server (pid ${first.pid} on ${hostname()}) uses the SQLite database ${join(dataDir, 'boardfleet.sqlite')}: ` +
        'a SQLite database serves one server process; stop that one, or give several servers one PostgreSQL database (DATABASE_URL=postgres://…)',
    ]);
    expect(ownerPid()).toBe(first.pid);

    // Killed, the first leaves its claim behind: the next server takes it over.
    await stopProcess(first, 'SIGKILL');
    const third = serverProcess({ BOARDFLEET_DATA_DIR: dataDir });
    await eventually('the third server to claim the database', () => ownerPid() === third.pid, 30_000);
    expect(third.exitCode).toBeNull();
  });
});

describe('logs', () => {
  it('are one readable line per event on a terminal', async () => {
    const squatter = await squat();
    try {
      // script(1) gives the server a pty; the taken port ends it right after its first log lines.
      const child = spawn('script', ['-qec', `${process.execPath} ${CLI} server`, '/dev/null'], {
        env: {
          ...process.env,
          BOARDFLEET_DATA_DIR: tempDir('boardfleet-first-start-tty-'),
          BOARDFLEET_HTTP_PORT: '0',
          BOARDFLEET_MQTT_HOST: '127.0.0.1',
          BOARDFLEET_MQTT_PORT: String(squatter.port),
          LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let output = '';
      child.stdout.on('data', (data: Buffer) => (output += data.toString()));
      expect(await exitCode(child, 30_000)).toBe(1);
      expect(output).toMatch(/^\[[\d:.]+\] \S*INFO\S*: \S*first start: admin API token written/m);
      expect(output).not.toContain('{"level"');
    } finally {
      squatter.close();
    }
  });
});

describe('LOG_LEVEL', () => {
  const problem = 'LOG_LEVEL=loud must be one of fatal, error, warn, info, debug, trace, silent';

  it('refuses an unknown level at server start-up with the other variables, no stack trace', async () => {
    const child = serverProcess({ LOG_LEVEL: 'loud' });
    expect(await exitCode(child, 30_000)).toBe(1);
    expect(stderrLines(child.stderr())).toEqual(['boardfleet: invalid configuration:', `  ${problem}`]);
  });

  it('refuses an unknown level at agent start-up, no stack trace', async () => {
    const child = startAgentProcess(
      ['--server', 'http://127.0.0.1:9', '--data-dir', tempDir('boardfleet-agent-level-')],
      { LOG_LEVEL: 'loud' },
    );
    children.push(child);
    expect(await exitCode(child, 30_000)).toBe(1);
    expect(stderrLines(child.output())).toEqual([
      'boardfleet: invalid agent configuration:',
      `  logLevel: LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent`,
    ]);
  });
});

describe('provisioning into a data dir that already holds credentials', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
  });
  afterAll(async () => {
    await server?.dispose();
  });

  const devices = async () =>
    (await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=1000')).body.devices;
  const provisioningToken = async (name: string) =>
    secretFile(
      (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name })).body.token,
    );
  const agent = (dataDir: string, args: string[]) => {
    const child = startAgentProcess(['--server', server.httpUrl, '--data-dir', dataDir, ...args]);
    children.push(child);
    return child;
  };
  const online = (name: string) =>
    eventually(
      `${name} online`,
      async () => (await devices()).find((device) => device.name === name && device.online),
      30_000,
    );
  const storedDeviceId = (dataDir: string) =>
    (JSON.parse(readFileSync(join(dataDir, 'credentials.json'), 'utf8')) as { deviceId: string }).deviceId;

  it('refuses another token unless --force, which provisions a new device; the same token is fine', async () => {
    const dataDir = tempDir('boardfleet-agent-twice-');
    const firstToken = await provisioningToken('first');
    const first = agent(dataDir, ['--provisioning-token-file', firstToken, '--name', 'first-name']);
    const firstDevice = await online('first-name');
    expect(storedDeviceId(dataDir)).toBe(firstDevice.id);
    // Stopping says so, in a line of its own.
    expect(await stopProcess(first, 'SIGTERM')).toBe(0);
    expect(first.output()).toContain('"msg":"agent stopped"');

    // The same token again (an image passes it on every boot) runs as the stored device.
    const again = agent(dataDir, ['--provisioning-token-file', firstToken, '--name', 'first-name']);
    await eventually('the agent to connect again', () => again.output().includes('connected'), 30_000);
    expect(again.exitCode).toBeNull();
    await stopProcess(again, 'SIGTERM');

    const secondToken = await provisioningToken('second');
    const refused = agent(dataDir, ['--provisioning-token-file', secondToken, '--name', 'second-name']);
    expect(await exitCode(refused, 30_000)).toBe(1);
    expect(stderrLines(refused.output())).toEqual([
      `boardfleet: ${dataDir} already holds the credentials of device ${firstDevice.id}, so the ` +
        'provisioning token and name would be ignored: give another --data-dir, or --force to replace them',
    ]);
    expect((await devices()).map((device) => device.name)).not.toContain('second-name');
    expect(storedDeviceId(dataDir)).toBe(firstDevice.id);

    agent(dataDir, ['--provisioning-token-file', secondToken, '--name', 'second-name', '--force']);
    const secondDevice = await online('second-name');
    expect(secondDevice.id).not.toBe(firstDevice.id);
    expect(storedDeviceId(dataDir)).toBe(secondDevice.id);
  });

  it('refuses a token where the device id and secret were given', async () => {
    const dataDir = tempDir('boardfleet-agent-given-');
    const created = (
      await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
        name: 'given-first',
      })
    ).body;
    const given = agent(dataDir, [
      ...['--device-id', created.device.id, '--secret-file', secretFile(created.secret)],
      ...['--mqtt', server.mqttUrl],
    ]);
    await online('given-first');
    await stopProcess(given, 'SIGTERM');

    const refused = agent(dataDir, ['--provisioning-token-file', await provisioningToken('late')]);
    expect(await exitCode(refused, 30_000)).toBe(1);
    expect(refused.output()).toContain(`already holds the credentials of device ${created.device.id}`);
  });
});
