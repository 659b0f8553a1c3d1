import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/** The values LOG_LEVEL takes: pino's levels, and silent. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** The values LOG_FORMAT takes; unset, the stream decides (see `logFormatFor`). */
export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value);
}

/**
 * How logs are written to `stream` when LOG_FORMAT does not say: one readable line per event for a
 * person at a terminal, pino's JSON for everything else (pipes, files, log collectors and tests
 * parse it).
 */
export function logFormatFor(stream: { isTTY?: boolean }, chosen?: LogFormat): LogFormat {
  if (chosen) return chosen;
  return stream.isTTY === true ? 'pretty' : 'json';
}

/**
 * A pino logger on stdout in `format`, or the one `logFormatFor` chooses for stdout; with `tee`,
 * every record also goes there as one JSON line (the agent keeps its own log in its log ring).
 */
export function createLogger(
  level: LogLevel,
  format?: LogFormat,
  tee?: { write(line: string): void },
): Logger {
  const json = logFormatFor(process.stdout, format) === 'json';
  if (json && !tee) return pino({ level });
  // Synchronous in this thread, not a worker transport: the line before process.exit() is not lost.
  const stdout = json
    ? pino.destination({ dest: process.stdout.fd || 1, sync: false })
    : pretty({ sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  if (!tee) return pino({ level }, stdout);
  return pino(
    { level },
    pino.multistream([
      { level: 'trace', stream: stdout },
      { level: 'trace', stream: tee },
    ]),
  );
}
