import type { Command } from 'commander';
import type { RawData, WebSocket } from 'ws';
import type { ShellSessionList, ShellSessionRecord } from '../../protocol/api/device-shell.ts';
import type { ShellServerControl } from '../../protocol/device-shell.ts';
import { shellTunnelPath } from '../../protocol/device-shell.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient, apiErrorMessage, serverCaPem } from '../api-client.ts';
import { findDevice } from '../device-lookup.ts';
import { formatBytes, formatTime, printJson, printTable } from '../output.ts';

/** What `ssh` exits with when the connection, not the remote command, ended the session. */
const CONNECTION_ENDED = 255;

async function openTunnel(api: ApiClient, path: string): Promise<WebSocket> {
  const { WebSocket } = await import('ws');
  const url = `${api.baseUrl.replace(/^http/, 'ws')}${path}`;
  const ca = serverCaPem(api.baseUrl);
  const socket = new WebSocket(url, { headers: { authorization: `Bearer ${api.token}` }, ...(ca && { ca }) });
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => {
        let message = response.statusMessage ?? '';
        try {
          message = (JSON.parse(body) as { message?: string }).message ?? message;
        } catch {
          // Not the API's JSON: the status says enough.
        }
        reject(
          new BoardfleetError('api-error', apiErrorMessage('GET', path, response.statusCode ?? 0, message)),
        );
      });
    });
    socket.once('error', (error) =>
      reject(
        new BoardfleetError(
          'server-unreachable',
          `cannot reach the Boardfleet server at ${api.baseUrl} (${error.message}); is it running? set BOARDFLEET_URL`,
        ),
      ),
    );
  });
}

/**
 * Relays the terminal until the session ends; resolves with the remote shell's exit code, or 255
 * after saying why the connection closed otherwise.
 */
function relay(socket: WebSocket, device: string, interactive: boolean): Promise<number> {
  const input = process.stdin;
  const raw = interactive && input.isTTY;
  const resize = () => {
    if (process.stdout.columns && process.stdout.rows)
      socket.send(
        JSON.stringify({ type: 'resize', cols: process.stdout.columns, rows: process.stdout.rows }),
      );
  };
  const send = (chunk: Buffer) => socket.send(chunk, { binary: true });
  if (interactive) {
    if (raw) input.setRawMode(true);
    input.on('data', send);
    input.resume();
    process.stdout.on('resize', resize);
  }
  return new Promise((resolve) => {
    let exit: Extract<ShellServerControl, { type: 'exit' }> | null = null;
    socket.on('message', (data: RawData, isBinary) => {
      const bytes = data as Buffer;
      if (isBinary) process.stdout.write(bytes);
      else {
        const control = JSON.parse(bytes.toString()) as ShellServerControl;
        if (control.type === 'exit') exit = control;
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', (_code, reason) => {
      if (raw) input.setRawMode(false);
      input.off('data', send);
      input.pause();
      process.stdout.off('resize', resize);
      const ended: Extract<ShellServerControl, { type: 'exit' }> | null = exit;
      if (ended && ended.code !== null) return resolve(ended.code);
      const why = ended?.reason ?? (reason.toString() || 'the connection was lost');
      process.stderr.write(`${raw ? '\r\n' : ''}Connection to ${device} closed: ${why}.\n`);
      resolve(CONNECTION_ENDED);
    });
  });
}

function sessionRow(session: ShellSessionRecord): Record<string, string> {
  const seconds = ((session.endedAt ?? Date.now()) - session.startedAt) / 1000;
  return {
    id: session.id,
    device: session.deviceId,
    actor: session.via === 'session' ? `${session.actor} (dashboard)` : session.actor,
    started: formatTime(session.startedAt, 'seconds'),
    duration: `${seconds.toFixed(1)} s${session.endedAt === null ? ' (open)' : ''}`,
    'in/out': `${formatBytes(session.bytesIn)} / ${formatBytes(session.bytesOut)}`,
    command: session.command ?? '(interactive)',
    ended: session.endedAt === null ? '-' : (session.endReason ?? '-'),
  };
}

export function register(program: Command): void {
  const shell = program
    .command('shell')
    .description('A shell on a device, tunnelled through the server (where BOARDFLEET_SHELL=on)')
    .argument('<device>', 'device id or name')
    .option('-c, --command <command>', 'run one command without a terminal and exit with its exit code')
    .addHelpText(
      'after',
      `
The device connects out to the server; nothing listens on it. Needs the operator or admin role,
and a device where the shell is enabled: boardfleet config set BOARDFLEET_SHELL=on --device ID
(or --tag T). Exits with the remote shell's code; 255 when the connection ended the session
(idle timeout, device offline), with the reason on stderr. Every session is in the audit log.

Examples:
  boardfleet shell kitchen-pi
  boardfleet shell dev-3f9c… -c 'uptime; df -h /'
  boardfleet shell sessions --device dev-3f9c…`,
    )
    .action(async (device: string, options: { command?: string }) => {
      const api = ApiClient.fromEnvironment();
      const deviceId = (await findDevice(api, device)).id;
      const query = new URLSearchParams({
        cols: String(process.stdout.columns || 80),
        rows: String(process.stdout.rows || 24),
        ...(options.command !== undefined && { command: options.command }),
      });
      const socket = await openTunnel(api, `${shellTunnelPath(deviceId)}?${query}`);
      process.exitCode = await relay(socket, device, options.command === undefined);
    });

  shell
    .command('sessions')
    .description('Shell sessions, newest first: who, on which device, when, how long, how they ended')
    .option('--device <id>', "only this device's sessions")
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'machine-readable output')
    .action(async (options: { device?: string; limit: string; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const query = new URLSearchParams({ limit: options.limit });
      if (options.device !== undefined) query.set('device', (await findDevice(api, options.device)).id);
      const { sessions } = await api.request<ShellSessionList>('GET', `/api/v1/shell-sessions?${query}`);
      if (options.json) return printJson(sessions);
      printTable(sessions.map(sessionRow), [
        'id',
        'device',
        'actor',
        'started',
        'duration',
        'in/out',
        'command',
        'ended',
      ]);
    });
}
