import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AuditLog } from '../../protocol/api/audit.ts';
import type { ShellSessionList } from '../../protocol/api/device-shell.ts';
import type { ShellServerControl } from '../../protocol/device-shell.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { launchChromium } from '../support/chromium.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** A WebSocket client of the shell tunnel, as the dashboard's terminal uses it, that records everything it gets. */
async function tunnel(server: TestServer, deviceId: string, headers: Record<string, string>, query = '') {
  const socket = new WebSocket(`ws://127.0.0.1:${server.httpPort}/api/v1/devices/${deviceId}/shell${query}`, {
    headers,
  });
  let output = '';
  const controls: ShellServerControl[] = [];
  socket.on('message', (data, isBinary) => {
    if (isBinary) output += (data as Buffer).toString();
    else controls.push(JSON.parse((data as Buffer).toString()) as ShellServerControl);
  });
  const refusal = new Promise<{ status: number; body: { code: string; message: string } }>((resolve) =>
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(body) }));
    }),
  );
  socket.on('error', () => undefined);
  const closed = once(socket, 'close');
  return {
    socket,
    closed,
    refusal,
    output: () => output,
    controls,
    exit: () => controls.find((control) => control.type === 'exit'),
    type: (text: string) => socket.send(Buffer.from(text), { binary: true }),
  };
}

describe('the remote shell, with a real server and agent process', () => {
  let server: TestServer;
  let agent: ReturnType<typeof startAgentProcess>;
  const agentDir = mkdtempSync(join(tmpdir(), 'boardfleet-shell-agent-'));
  let deviceId: string;
  let admin: CliRunner;
  let viewerToken: string;
  const bearer = () => ({ authorization: `Bearer ${server.adminToken}` });

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend, { BOARDFLEET_SHELL_TRANSCRIPTS: 'on' });
    admin = cliRunner({ url: server.httpUrl, token: server.adminToken, timeoutMs: 60_000 });
    const provisioning = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'shell',
    });
    viewerToken = (
      await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
        name: 'watcher',
        role: 'viewer',
      })
    ).body.token;
    agent = startAgentProcess([
      '--server',
      server.httpUrl,
      '--provisioning-token-file',
      secretFile(provisioning.body.token),
      '--name',
      'shell-pi',
      '--data-dir',
      agentDir,
      '--heartbeat',
      '1',
    ]);
    deviceId = await eventually(
      'shell-pi online',
      async () => {
        const { body } = await server.api<{ devices: Array<{ id: string; name: string; online: boolean }> }>(
          'GET',
          '/api/v1/devices?q=shell-pi',
        );
        const device = body.devices.find((candidate) => candidate.name === 'shell-pi');
        return device?.online && device.id;
      },
      30_000,
    );
  }, 60_000);

  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGKILL');
    await server?.dispose();
  });

  it('refuses a device where the shell is off, in one line that says how to turn it on, and audits the attempt', async () => {
    const refused = await admin.failing('shell', 'shell-pi', '-c', 'true');
    expect(refused.stderr.trim()).toBe(
      `boardfleet: GET /api/v1/devices/${deviceId}/shell failed (403): the shell is off for device ${deviceId}: enable it with boardfleet config set BOARDFLEET_SHELL=on --device ${deviceId}`,
    );
    const { body } = await server.api<AuditLog>('GET', '/api/v1/audit?limit=5');
    expect(body.entries[0]).toMatchObject({ action: 'shell.open', target: deviceId, outcome: 'failed' });
  });

  it('runs a command once the device applied BOARDFLEET_SHELL=on, and exits with its code', async () => {
    const set = await server.api('PUT', '/api/v1/config/variables/BOARDFLEET_SHELL', {
      value: 'on',
      scope: 'device',
      target: deviceId,
    });
    expect(set.status, JSON.stringify(set.body)).toBeLessThan(300);
    await eventually(
      'the device to apply the configuration',
      async () =>
        (await server.api<{ applied: boolean }>('GET', `/api/v1/devices/${deviceId}/config`)).body.applied,
      20_000,
    );
    const started = Date.now();
    const hello = await admin.ok('shell', 'shell-pi', '-c', 'echo hello-$((6*7))');
    console.log(`shell -c round trip (CLI process start included): ${Date.now() - started} ms`);
    expect(hello.stdout).toBe('hello-42\n');
    const failed = await admin.failing('shell', deviceId, '-c', 'echo to-stderr >&2; exit 7');
    expect(failed.code).toBe(7);
    // One stream, as on a terminal: the command's stderr comes out with its stdout.
    expect(failed.stdout).toBe('to-stderr\n');
  });

  it('refuses a viewer token', async () => {
    const viewer = cliRunner({ url: server.httpUrl, token: viewerToken });
    const refused = await viewer.failing('shell', 'shell-pi', '-c', 'true');
    expect(refused.stderr.trim()).toBe(
      `boardfleet: GET /api/v1/devices/${deviceId}/shell failed (403): a shell needs the operator role; the token has viewer`,
    );
    const transcript = await server.api(
      'GET',
      '/api/v1/shell-sessions/any/transcript',
      undefined,
      viewerToken,
    );
    expect(transcript.status).toBe(403);
  });

  it('refuses a dashboard cookie from another site (cross-site WebSocket hijacking)', async () => {
    const signIn = await fetch(`${server.httpUrl}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-boardfleet-csrf': '1' },
      body: JSON.stringify({ token: server.adminToken }),
    });
    const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const foreign = await tunnel(server, deviceId, { cookie, origin: 'https://evil.example' });
    expect(await foreign.refusal).toMatchObject({ status: 403, body: { code: 'forbidden' } });
    const elsewhere = new WebSocket(`ws://127.0.0.1:${server.httpPort}/api/v1/elsewhere`);
    elsewhere.on('error', () => undefined);
    const [, response] = (await once(elsewhere, 'unexpected-response')) as [unknown, { statusCode: number }];
    expect(response.statusCode).toBe(404);
    const own = await tunnel(
      server,
      deviceId,
      { cookie, origin: `http://127.0.0.1:${server.httpPort}` },
      '?command=true',
    );
    await own.closed;
    expect(own.exit()).toEqual({ type: 'exit', code: 0, reason: 'the shell exited with code 0' });
  });

  it('runs an interactive session on a pty through the CLI in a terminal', async () => {
    // `script` gives the CLI a terminal of its own: it goes raw and relays keys as typed.
    const child = spawn('script', ['-qefc', `${process.execPath} ${CLI} shell shell-pi`, '/dev/null'], {
      env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stdin.write('echo pty-$((6*7)); tty; exit 3\n');
    const [code] = (await once(child, 'exit')) as [number];
    expect(output).toContain('pty-42');
    expect(output).toMatch(/\/dev\/pts\/\d+/);
    expect(code, output).toBe(3);
  });

  it('relays a WebSocket session, records it with its transcript, and audits its end with the duration', async () => {
    const session = await tunnel(server, deviceId, bearer(), '?cols=100&rows=30');
    await eventually('opened', () => session.controls.find((control) => control.type === 'opened'));
    expect(session.controls[0]).toMatchObject({ type: 'opened', mode: 'pty' });
    session.socket.send(JSON.stringify({ type: 'resize', cols: 120, rows: 40 }));
    session.type('echo ws-$((6*7)); sleep 0.2; stty size\n');
    await eventually('the output', () => session.output().includes('ws-42'));
    // Once the shell is up: a line typed to its output, server → MQTT → agent → pty and back.
    const typedAt = Date.now();
    session.type('echo again-$((1+1))\n');
    await eventually('the second output', () => session.output().includes('again-2'));
    console.log(`typed line to its output through the tunnel: ${Date.now() - typedAt} ms`);
    await eventually('the resized terminal', () => session.output().includes('40 120'));
    session.type('exit 4\n');
    await session.closed;
    expect(session.exit()).toEqual({ type: 'exit', code: 4, reason: 'the shell exited with code 4' });

    const { body } = await server.api<ShellSessionList>(
      'GET',
      `/api/v1/shell-sessions?device=${deviceId}&limit=1`,
    );
    const [row] = body.sessions;
    expect(row).toMatchObject({
      deviceId,
      actor: 'admin',
      mode: 'pty',
      command: null,
      exitCode: 4,
      endReason: 'the shell exited with code 4',
      transcript: true,
    });
    expect(row?.bytesIn).toBeGreaterThan(20);
    expect(row?.bytesOut).toBeGreaterThan(row?.bytesIn ?? 0);
    const transcript = await fetch(`${server.httpUrl}/api/v1/shell-sessions/${row?.id}/transcript`, {
      headers: bearer(),
    });
    expect(await transcript.text()).toContain('ws-42');
    const audit = await server.api<AuditLog>('GET', '/api/v1/audit?limit=20');
    const ended = audit.body.entries.find(
      (entry) => entry.action === 'shell.end' && entry.detail?.includes(row?.id ?? '?'),
    );
    expect(ended?.detail).toMatch(
      new RegExp(
        `^session ${row?.id}, \\d+\\.\\d s, \\d+ bytes in, \\d+ bytes out, exit 4: the shell exited with code 4$`,
      ),
    );

    const listed = await admin.ok('shell', 'sessions', '--device', 'shell-pi', '--json');
    expect((JSON.parse(listed.stdout) as Array<{ id: string }>)[0]?.id).toBe(row?.id);
  });

  it('opens a terminal in the dashboard that runs what is typed', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(server.httpUrl);
      await page.getByLabel('Operator token').fill(server.adminToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.goto(`${server.httpUrl}/devices/${deviceId}`);
      await page.getByRole('button', { name: 'Open shell' }).click();
      await page
        .getByTestId('shell-status')
        .filter({ hasText: /^connected$/ })
        .waitFor();
      await page.getByTestId('shell-terminal').click();
      await page.keyboard.type('echo web-$((6*7))\n');
      await page.getByTestId('shell-terminal').filter({ hasText: 'web-42' }).waitFor();
      await page.keyboard.type('exit 6\n');
      await page.getByTestId('shell-status').filter({ hasText: 'exited with code 6' }).waitFor();
      const { body } = await server.api<ShellSessionList>(
        'GET',
        `/api/v1/shell-sessions?device=${deviceId}&limit=1`,
      );
      expect(body.sessions[0]).toMatchObject({ via: 'session', actor: 'admin', exitCode: 6 });
    } finally {
      await browser.close();
    }
  });

  it('ends the session on both sides when the agent is killed mid-session', async () => {
    const session = await tunnel(server, deviceId, bearer());
    await eventually('opened', () => session.controls.find((control) => control.type === 'opened'));
    session.type('echo "shell-pid $$"\n');
    const shellPid = Number(
      (await eventually('the output', () => /shell-pid (\d+)/.exec(session.output()) ?? undefined))[1],
    );
    await stopProcess(agent, 'SIGKILL');
    await session.closed;
    expect(session.exit()).toEqual({ type: 'exit', code: null, reason: 'device went offline' });
    const { body } = await server.api<ShellSessionList>(
      'GET',
      `/api/v1/shell-sessions?device=${deviceId}&limit=1`,
    );
    expect(body.sessions[0]).toMatchObject({ endReason: 'device went offline', endedAt: expect.any(Number) });

    const offline = await admin.failing('shell', 'shell-pi', '-c', 'true');
    expect(offline.stderr).toContain(`(409): device ${deviceId} is offline: a shell needs it connected`);

    // Killed, the agent could not end its shell (it may outlive it); started again, it does.
    agent = startAgentProcess(['--server', server.httpUrl, '--data-dir', agentDir, '--heartbeat', '1']);
    await eventually('the leftover shell to be ended', () => !existsSync(`/proc/${shellPid}`), 30_000);
  });
});
