import { EventEmitter } from 'node:events';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import type { ShellInput, ShellOutput, ShellServerControl } from '../../protocol/device-shell.ts';
import type { AuditRepository, NewAuditEntry } from '../audit/audit.repository.ts';
import { eventually } from '../../test/support/test-server.ts';
import type { ShellSessionEnd, ShellSessionRepository } from './shell-session.repository.ts';
import { ShellTunnel } from './shell-tunnel.ts';

/** A stand-in for the operator's WebSocket (a double): records what the tunnel sends and how it closed. */
class SocketDouble extends EventEmitter {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly bytes: Buffer[] = [];
  readonly controls: ShellServerControl[] = [];
  closedWith: string | null = null;
  send(data: Buffer | string): void {
    if (typeof data === 'string') this.controls.push(JSON.parse(data) as ShellServerControl);
    else this.bytes.push(data);
  }
  close(_code: number, reason: string): void {
    this.closedWith = reason;
    this.readyState = 3;
    this.emit('close');
  }
}

function tunnelWith(idleSeconds = 60) {
  const sent: Array<{ deviceId: string; input: ShellInput }> = [];
  const ended: ShellSessionEnd[] = [];
  const audited: NewAuditEntry[] = [];
  const tunnel = new ShellTunnel({
    sessions: {
      insert: async () => undefined,
      finish: async (_id: string, end: ShellSessionEnd) => void ended.push(end),
    } as unknown as ShellSessionRepository,
    audit: { append: async (entry: NewAuditEntry) => void audited.push(entry) } as unknown as AuditRepository,
    publish: async (deviceId, input) => void sent.push({ deviceId, input }),
    clock: { now: () => Date.now() },
    idleSeconds,
    transcripts: true,
    logger: pino({ level: 'silent' }),
  });
  const open = async (deviceId = 'dev-a') => {
    const socket = new SocketDouble();
    await tunnel.open(socket as unknown as WebSocket, {
      deviceId,
      operator: { name: 'ops', tokenId: 'tok-1' },
      via: 'token',
      cols: 80,
      rows: 24,
      command: null,
    });
    const session = (sent.find((message) => message.input.type === 'open') as { input: ShellInput }).input
      .session;
    return { socket, session };
  };
  const output = (session: string, message: Omit<ShellOutput, 'session' | 'at'>) =>
    Buffer.from(JSON.stringify({ session, at: Date.now(), ...message }));
  return { tunnel, sent, ended, audited, open, output };
}

describe('the server’s shell tunnel', () => {
  it('relays output once per seq, only from the session’s own device, and records the end', async () => {
    const { tunnel, ended, audited, open, output } = tunnelWith();
    const { socket, session } = await open('dev-a');
    tunnel.receive('dev-a', output(session, { seq: 0, type: 'opened', mode: 'pty' }));
    const hello = { seq: 1, type: 'data' as const, data: Buffer.from('hello').toString('base64') };
    tunnel.receive('dev-a', output(session, hello));
    tunnel.receive('dev-a', output(session, hello));
    tunnel.receive(
      'dev-b',
      output(session, { seq: 2, type: 'data', data: Buffer.from('forged').toString('base64') }),
    );
    tunnel.receive('dev-a', Buffer.from('{"not":"a shell message"}'));
    expect(Buffer.concat(socket.bytes).toString()).toBe('hello');
    tunnel.receive(
      'dev-a',
      output(session, { seq: 2, type: 'exit', code: 0, reason: 'the shell exited with code 0' }),
    );
    expect(socket.controls).toEqual([
      { type: 'opened', session, mode: 'pty' },
      { type: 'exit', code: 0, reason: 'the shell exited with code 0' },
    ]);
    await eventually('the end recorded', () => ended.length === 1);
    expect(ended[0]).toMatchObject({ exitCode: 0, bytesOut: 5, mode: 'pty', transcript: 'hello' });
    await eventually('audited', () => audited.length === 2);
    expect(audited.map((entry) => entry.action)).toEqual(['shell.open', 'shell.end']);
  });

  it('ends the session when the device goes offline, without writing to the gone device', async () => {
    const { tunnel, sent, ended, open } = tunnelWith();
    const { socket, session } = await open('dev-a');
    tunnel.presenceChanged('dev-a', true);
    tunnel.presenceChanged('dev-b', false);
    expect(socket.closedWith).toBeNull();
    tunnel.presenceChanged('dev-a', false);
    expect(socket.controls.at(-1)).toEqual({ type: 'exit', code: null, reason: 'device went offline' });
    await eventually('the end recorded', () => ended.length === 1);
    expect(
      sent.filter((message) => message.input.session === session).map((message) => message.input.type),
    ).toEqual(['open']);
  });

  it('relays input in order and tells the device when the operator leaves', async () => {
    const { sent, open } = tunnelWith();
    const { socket, session } = await open();
    socket.emit('message', Buffer.from('ls\n'), true);
    socket.emit('message', Buffer.from(JSON.stringify({ type: 'resize', cols: 120, rows: 40 })), false);
    socket.emit('message', Buffer.from('{"type":"bogus"}'), false);
    socket.close(1000, '');
    await eventually('the close sent', () => sent.some((message) => message.input.type === 'close'));
    const inputs = sent
      .filter((message) => message.input.session === session)
      .map((message) => message.input);
    expect(inputs.map((input) => [input.seq, input.type])).toEqual([
      [0, 'open'],
      [1, 'data'],
      [2, 'resize'],
      [3, 'close'],
    ]);
    expect(inputs[2]).toMatchObject({ cols: 120, rows: 40 });
  });

  it('ends a session idle for its timeout', async () => {
    const { open, sent } = tunnelWith(1);
    const { socket } = await open();
    await eventually('the idle end', () => socket.controls.find((control) => control.type === 'exit'), 5000);
    expect(socket.controls.at(-1)).toEqual({
      type: 'exit',
      code: null,
      reason: 'idle: no input or output for 1 s',
    });
    expect(sent.at(-1)?.input.type).toBe('close');
  });
});
