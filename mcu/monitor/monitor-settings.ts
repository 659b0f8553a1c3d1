import { BoardfleetError } from '../../protocol/errors.ts';

/** What Enter sends after a line: the Arduino IDE's "Newline", "Both NL & CR" and "No line ending". */
export const LINE_ENDINGS = { lf: '\n', crlf: '\r\n', none: '' } as const;

export type LineEnding = keyof typeof LINE_ENDINGS;

export interface MonitorSettings {
  baudRate: number;
  lineEnding: LineEnding;
  timestamps: boolean;
  /** How long a port that went away may take to come back before the monitor gives up. */
  reconnectTimeoutMs: number;
}

/** The monitor's flags as typed; every bad one is a one-line error naming it. */
export function parseMonitorSettings(flags: {
  baud: string;
  eol: string;
  timestamps?: boolean;
  reconnectTimeout: string;
}): MonitorSettings {
  const baudRate = Number(flags.baud);
  if (!Number.isInteger(baudRate) || baudRate <= 0) {
    throw new BoardfleetError(
      'invalid-option',
      `--baud must be a baud rate such as 9600 or 115200, not "${flags.baud}"`,
    );
  }
  if (!Object.hasOwn(LINE_ENDINGS, flags.eol)) {
    throw new BoardfleetError('invalid-option', `--eol must be lf, crlf or none, not "${flags.eol}"`);
  }
  const seconds = Number(flags.reconnectTimeout);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new BoardfleetError(
      'invalid-option',
      `--reconnect-timeout must be a number of seconds, not "${flags.reconnectTimeout}"`,
    );
  }
  return {
    baudRate,
    lineEnding: flags.eol as LineEnding,
    timestamps: flags.timestamps ?? false,
    reconnectTimeoutMs: seconds * 1000,
  };
}

/** `14:03:07.042`: the wall clock's time of day, to the millisecond. */
export function formatClock(time: Date): string {
  const two = (value: number) => String(value).padStart(2, '0');
  return `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}.${String(time.getMilliseconds()).padStart(3, '0')}`;
}

/**
 * Prefixes each line the board sends with the time its first byte arrived (`14:03:07.042 -> `),
 * as the Arduino IDE's "Show timestamp" does. Works on bytes, so text split across reads, or not
 * UTF-8, passes through untouched.
 */
export function timestamper(now: () => Date): (chunk: Uint8Array) => Uint8Array {
  let atLineStart = true;
  const encoder = new TextEncoder();
  return (chunk) => {
    if (chunk.length === 0) return chunk;
    const prefix = encoder.encode(`${formatClock(now())} -> `);
    const parts: Uint8Array[] = [];
    let from = 0;
    for (let index = 0; index < chunk.length; index++) {
      if (atLineStart) {
        parts.push(chunk.subarray(from, index), prefix);
        from = index;
        atLineStart = false;
      }
      if (chunk[index] === 0x0a) atLineStart = true;
    }
    parts.push(chunk.subarray(from));
    return Buffer.concat(parts);
  };
}

/** How long to wait before looking for a vanished port again: quick at first, then every second. */
export function reconnectDelayMs(attempt: number): number {
  return Math.min(50 * 2 ** attempt, 1000);
}

/** `60 s`, `1.5 s`: a timeout as the monitor says it. */
export function formatSeconds(milliseconds: number): string {
  return `${Number((milliseconds / 1000).toFixed(1))} s`;
}
