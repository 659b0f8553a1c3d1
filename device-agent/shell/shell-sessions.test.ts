import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ShellInput, ShellOutput } from '../../protocol/device-shell.ts';
import { eventually } from '../../test/support/test-server.ts';
import { shellHost, startShellProcess } from './shell-process.ts';
import { ShellSessions } from './shell-sessions.ts';

const ENABLED = { BOARDFLEET_SHELL: 'on' };

/** A device's shell sessions publishing into a list, as the server would receive them. */
function device(
  options: { variables?: Record<string, string>; maxSessions?: number; searchPath?: string } = {},
) {
  const published: ShellOutput[] = [];
  const host = shellHost();
  const sessions = new ShellSessions({
    publish: async (message) => {
      published.push(message);
      return true;
    },
    variables: () => options.variables ?? ENABLED,
    logger: pino({ level: 'silent' }),
    maxSessions: options.maxSessions,
    host: options.searchPath === undefined ? host : { ...host, searchPath: options.searchPath },
  });
  let seq = 0;
  const send = (
    session: string,
    message: Omit<ShellInput, 'session' | 'seq' | 'at'> & { seq?: number; at?: number },
  ) => sessions.receive({ session, seq: message.seq ?? seq++, at: Date.now(), ...message });
  const of = (session: string) => published.filter((message) => message.session === session);
  const text = (session: string) =>
    of(session)
      .filter((message) => message.type === 'data')
      .map((message) => Buffer.from(message.data ?? '', 'base64').toString())
      .join('');
  const exitOf = (session: string) => of(session).find((message) => message.type === 'exit');
  return {
    sessions,
    published,
    send,
    of,
    text,
    exitOf,
    typed: (data: string) => Buffer.from(data).toString('base64'),
  };
}

describe('the agent’s shell sessions', () => {
  const running: ShellSessions[] = [];
  afterEach(() => {
    for (const sessions of running.splice(0)) sessions.stopAll('test over');
  });

  it('runs an interactive login shell on a pty, echoes what it runs, and ends with its exit code', async () => {
    const shell = device();
    running.push(shell.sessions);
    shell.send('s1', { type: 'open', cols: 100, rows: 30, idleSeconds: 60 });
    expect(await eventually('opened', () => shell.of('s1')[0])).toMatchObject({
      type: 'opened',
      mode: 'pty',
      seq: 0,
    });
    shell.send('s1', { type: 'data', data: shell.typed('echo hello-$((6*7)); stty size\n') });
    await eventually('the command’s output', () => shell.text('s1').includes('hello-42'));
    await eventually('the pty’s size', () => shell.text('s1').includes('30 100'));
    shell.send('s1', { type: 'resize', cols: 132, rows: 40 });
    // stty reports the size the resize set, through /proc and stty -F.
    await eventually(
      'the resized pty',
      () => {
        shell.send('s1', { type: 'data', data: shell.typed('stty size\n') });
        return shell.text('s1').includes('40 132');
      },
      10_000,
    );
    shell.send('s1', { type: 'data', data: shell.typed('exit 3\n') });
    const exit = await eventually('the exit', () => shell.exitOf('s1'));
    expect(exit).toMatchObject({ code: 3 });
    const seqs = shell.of('s1').map((message) => message.seq);
    expect(seqs).toEqual(seqs.map((_seq, index) => index));
    expect(shell.sessions.running).toBe(0);
  });

  it('runs one command without a terminal and passes on its output and exit code', async () => {
    const shell = device();
    running.push(shell.sessions);
    shell.send('c1', { type: 'open', command: 'echo out-$((6*7)); echo err >&2; exit 5', idleSeconds: 60 });
    const exit = await eventually('the exit', () => shell.exitOf('c1'));
    expect(exit).toMatchObject({ code: 5, reason: 'the shell exited with code 5' });
    expect(shell.of('c1')[0]).toMatchObject({ type: 'opened', mode: 'pipes' });
    expect(shell.text('c1')).toContain('out-42');
    expect(shell.text('c1')).toContain('err');
  });

  it('falls back to an interactive shell on pipes where there is no script', async () => {
    const shell = device({ searchPath: mkdtempSync(join(tmpdir(), 'no-script-')) });
    running.push(shell.sessions);
    shell.send('p1', { type: 'open', idleSeconds: 60 });
    expect(await eventually('opened', () => shell.of('p1')[0])).toMatchObject({
      type: 'opened',
      mode: 'pipes',
    });
    shell.send('p1', { type: 'data', data: shell.typed('echo piped-$((6*7)); exit 4\n') });
    const exit = await eventually('the exit', () => shell.exitOf('p1'));
    expect(shell.text('p1')).toContain('piped-42');
    expect(exit.code).toBe(4);
  });

  it('types a redelivered message once', async () => {
    const shell = device();
    running.push(shell.sessions);
    shell.send('d1', { type: 'open', idleSeconds: 60, seq: 0 });
    const line = { type: 'data' as const, data: shell.typed('echo "x$((1+1))y"\n'), seq: 1 };
    shell.send('d1', line);
    shell.send('d1', line);
    shell.send('d1', { type: 'data', data: shell.typed('exit\n'), seq: 2 });
    await eventually('the exit', () => shell.exitOf('d1'));
    expect(shell.text('d1').match(/x2y/g)).toHaveLength(1);
  });

  it('ends a session nobody types in or reads from after its idle timeout', async () => {
    const shell = device();
    running.push(shell.sessions);
    shell.send('i1', { type: 'open', idleSeconds: 1 });
    const exit = await eventually('the idle end', () => shell.exitOf('i1'), 15_000);
    expect(exit).toMatchObject({ code: null, reason: 'idle: no input or output for 1 s' });
  });

  it('ends a session the operator closes, and does not open it again when the open is redelivered', async () => {
    const shell = device();
    running.push(shell.sessions);
    shell.send('x1', { type: 'open', idleSeconds: 60, seq: 0 });
    shell.send('x1', { type: 'close', seq: 1 });
    expect(await eventually('the exit', () => shell.exitOf('x1'))).toMatchObject({
      reason: 'closed by the operator',
    });
    shell.send('x1', { type: 'open', idleSeconds: 60, seq: 0 });
    expect(shell.sessions.running).toBe(0);
  });

  it('refuses where the applied configuration does not enable the shell', () => {
    const shell = device({ variables: { BOARDFLEET_SHELL: 'off' } });
    shell.send('r1', { type: 'open' });
    expect(shell.of('r1')).toEqual([
      expect.objectContaining({
        type: 'refused',
        reason: 'the shell is off on this device: its applied configuration does not set BOARDFLEET_SHELL=on',
      }),
    ]);
    expect(shell.sessions.running).toBe(0);
  });

  it('refuses a session beyond the limit and drops a stale open', async () => {
    const shell = device({ maxSessions: 1 });
    running.push(shell.sessions);
    shell.send('l1', { type: 'open', idleSeconds: 60 });
    shell.send('l2', { type: 'open', idleSeconds: 60 });
    expect(shell.of('l2')).toEqual([
      expect.objectContaining({
        type: 'refused',
        reason: 'this device already runs 1 shell sessions, its limit: close one first',
      }),
    ]);
    shell.send('old', { type: 'open', at: Date.now() - 60_000 });
    expect(shell.of('old')).toEqual([]);
    shell.sessions.stopAll('test over');
    await eventually('the session to end', () => shell.sessions.running === 0);
    // Stopped silently: nobody would receive an exit.
    expect(shell.exitOf('l1')).toBeUndefined();
  });
});

describe('shells a killed agent left running', () => {
  it('are ended by the next agent on the same data dir, and a recycled pid is left alone', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'shell-groups-'));
    const leftover = startShellProcess(shellHost(), { cols: 80, rows: 24 });
    const unrelated = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    const exited = once(leftover.child, 'exit');
    writeFileSync(
      join(dataDir, 'shell-groups.json'),
      JSON.stringify({ groups: [leftover.child.pid, unrelated.pid] }),
    );
    const next = new ShellSessions({
      publish: async () => true,
      variables: () => ENABLED,
      logger: pino({ level: 'silent' }),
      dataDir,
    });
    await exited;
    expect(unrelated.exitCode).toBeNull();
    unrelated.kill('SIGKILL');
    expect(next.running).toBe(0);
    expect(JSON.parse(readFileSync(join(dataDir, 'shell-groups.json'), 'utf8'))).toEqual({ groups: [] });
  });
});
