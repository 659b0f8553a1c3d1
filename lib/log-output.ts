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

/** A pino logger on stdout in `format`, or the one `logFormatFor` chooses for stdout. */
export function createLogger(level: LogLevel, format?: LogFormat): Logger {
  if (logFormatFor(process.stdout, format) === 'json') return pino({ level });
  // Synchronous in this thread, not a worker transport: the line before process.exit() is not lost.
  return pino(
    { level },
    pretty({ sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
  );
}
