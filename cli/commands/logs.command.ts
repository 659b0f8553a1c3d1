import type { Command } from 'commander';
import type { DeviceLogEvents } from '../../protocol/api/device-logs.ts';
import type { LogLine } from '../../protocol/device-logs.ts';
import { BoardfleetError, ERROR_STATUS, type ErrorCode } from '../../protocol/errors.ts';
import { ApiClient, apiErrorMessage } from '../api-client.ts';
import { type Device, findDevice } from '../device-lookup.ts';
import { type Paint, painter } from '../output.ts';

/** How long a follow waits before connecting to the server again, growing up to the maximum. */
const RECONNECT_FIRST_MS = 500;
const RECONNECT_MAX_MS = 5_000;

interface LogsOptions {
  app?: string;
  /** `true` for the one attached board, or its port. */
  board?: string | true;
  baud: string;
  follow?: boolean;
  since?: string;
  limit: string;
  json?: boolean;
}

/** `HH:MM:SS.mmm source text` (UTC, as the CLI prints times), stderr lines marked. */
export function formatLogLine(line: LogLine, paint: Paint): string {
  const time = new Date(line.at).toISOString().slice(11, 23);
  const source =
    line.stream === 'stderr' ? paint(`${line.source} [stderr]`, 'red') : paint(line.source, 'cyan');
  return `${paint(time, 'dim')} ${source} ${line.text}`;
}

/** The port of the board `--board` means: the one given, else the device's only attached board. */
function boardPort(device: Device, board: string | true): string {
  if (board !== true) return board;
  const ports = (device.inventory?.attachedBoards ?? []).map((attached) => attached.port);
  if (ports.length === 1) return ports[0] as string;
  throw new BoardfleetError(
    'log-source-unknown',
    ports.length === 0
      ? `device ${device.name} reports no attached board (start its agent with --attached-board)`
      : `device ${device.name} has ${ports.length} attached boards (${ports.join(', ')}): name one with --board PORT`,
  );
}

/** The events of one server-sent event stream, parsed, until the server ends it. */
async function* serverEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: unknown }> {
  let buffer = '';
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    let boundary: number;
    while ((boundary = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      let event = 'message';
      let data: string | null = null;
      for (const field of block.split('\n')) {
        if (field.startsWith('event:')) event = field.slice(6).trim();
        else if (field.startsWith('data:')) data = field.slice(5).trim();
      }
      if (data !== null) yield { event, data: JSON.parse(data) as unknown };
    }
  }
}

/**
 * Prints a device's logs; with `follow`, keeps printing, and when the connection to the server
 * drops, connects again asking for the lines after the last one printed (no gap, no repeat).
 */
async function printLogs(api: ApiClient, device: string, options: LogsOptions): Promise<void> {
  const named = await findDevice(api, device);
  const deviceId = named.id;
  const board = options.board === undefined ? undefined : boardPort(named, options.board);
  const paint = painter(process.stdout);
  const notice = (text: string) =>
    process.stderr.write(`${painter(process.stderr)(`-- ${text} --`, 'yellow')}\n`);
  let after: number | null = null;
  let waitMs = RECONNECT_FIRST_MS;
  for (;;) {
    const query = new URLSearchParams({ limit: options.limit });
    if (options.app !== undefined) query.set('app', options.app);
    if (board !== undefined) {
      query.set('board', board);
      query.set('baud', options.baud);
    }
    if (options.follow) query.set('follow', 'true');
    if (after !== null) query.set('after', String(after));
    else if (options.since !== undefined) query.set('since', options.since);
    const path = `/api/v1/devices/${encodeURIComponent(deviceId)}/logs?${query}`;
    let response: Response;
    try {
      response = await api.fetch(`${api.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${api.token}`, accept: 'text/event-stream' },
      });
    } catch (error) {
      if (!options.follow) throw serverUnreachable(api, error);
      notice(`cannot reach the server (${(error as Error).message}), trying again`);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      waitMs = Math.min(waitMs * 2, RECONNECT_MAX_MS);
      continue;
    }
    if (!response.ok || !response.body) {
      const text = await response.text();
      let refusal: { code?: string; message?: string } = {};
      try {
        refusal = JSON.parse(text) as typeof refusal;
      } catch {
        // Not one of our error bodies (a proxy's page): its text is the message.
      }
      throw new BoardfleetError(
        errorCode(refusal.code),
        apiErrorMessage('GET', path, response.status, refusal.message ?? text),
      );
    }
    waitMs = RECONNECT_FIRST_MS;
    try {
      for await (const { event, data } of serverEvents(response.body)) {
        if (event === 'line') {
          const line = data as DeviceLogEvents['line'];
          after = line.seq;
          process.stdout.write(
            `${options.json ? JSON.stringify({ seq: line.seq, at: line.at, source: line.source, stream: line.stream, text: line.text }) : formatLogLine(line, paint)}\n`,
          );
        } else if (event === 'device') {
          notice(
            (data as DeviceLogEvents['device']).online ? 'device online again' : 'device offline, waiting',
          );
        } else if (event === 'error') {
          const { code, message } = data as DeviceLogEvents['error'];
          // The server stopping is a lost connection to a follower: it comes back, or another replica answers.
          if (code !== 'unavailable' || !options.follow) throw new BoardfleetError(errorCode(code), message);
        }
      }
    } catch (error) {
      if (error instanceof BoardfleetError || !options.follow) throw error;
    }
    if (!options.follow) return;
    notice('connection to the server lost, reconnecting');
  }
}

/** The server's code when this CLI knows it (a newer server may send others). */
const errorCode = (code: string | undefined): ErrorCode =>
  code !== undefined && code in ERROR_STATUS ? (code as ErrorCode) : 'api-error';

function serverUnreachable(api: ApiClient, error: unknown): BoardfleetError {
  return new BoardfleetError(
    'server-unreachable',
    `cannot reach the Boardfleet server at ${api.baseUrl} (${(error as Error).cause ?? (error as Error).message}); is it running? set BOARDFLEET_URL`,
  );
}

export function register(program: Command): void {
  program
    .command('logs <device>')
    .description("A device's logs: its apps', VMs' and agent's output, numbered on the device")
    .option('--app <name>', "only this app's lines (an app bundle's name, or a VM's)")
    .option(
      '--board [port]',
      "the attached board's serial output (captured while you watch; with --app, both); PORT when it has several",
    )
    .option('--baud <n>', "with --board: the board's serial speed", '115200')
    .option('-f, --follow', 'keep printing new lines; survives the device or the server going away')
    .option('--since <time>', 'the lines since then: 30s, 10m, 2h, 1d back from now, or ms since the epoch')
    .option('--limit <n>', 'without --since: the newest this many lines first', '100')
    .option('--json', 'one JSON object per line (NDJSON): seq, at, source, stream, text')
    .addHelpText(
      'after',
      `
DEVICE is a device id or name. Times are UTC; stderr lines are marked [stderr].
The device streams only while someone watches; after a reconnect, the lines resume where they stopped.
With --board -f the agent opens the board's serial port only while you follow (which resets an Uno,
as any serial monitor does); a firmware flash pauses the capture and it resumes afterwards. Without
-f, --board shows the board's lines kept from earlier captures.

Examples:
  boardfleet logs kiosk-7
  boardfleet logs kiosk-7 --app web -f
  boardfleet logs bench-gateway --board -f        # what the attached Arduino prints over serial
  boardfleet logs kiosk-7 --since 10m --json`,
    )
    .action(async (device: string, options: LogsOptions) => {
      // Ctrl-C is how a follow ends: quietly, with success.
      if (options.follow) process.once('SIGINT', () => process.exit(0));
      await printLogs(ApiClient.fromEnvironment(), device, options);
    });
}
