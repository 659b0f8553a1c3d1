import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

/** The values LOG_LEVEL takes: pino's levels, and silent. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/**
 * How logs are written to `stream`: one readable line per event for a person at a terminal, pino's
 * JSON for everything else (pipes, files, log collectors and tests parse it).
 */
export function logFormatFor(stream: { isTTY?: boolean }): 'pretty' | 'json' {
  return stream.isTTY === true ? 'pretty' : 'json';
}

/** A pino logger on stdout in the format `logFormatFor` chooses for it. */
export function createLogger(level: LogLevel): Logger {
  if (logFormatFor(process.stdout) === 'json') return pino({ level });
  // Synchronous in this thread, not a worker transport: the line before process.exit() is not lost.
  return pino(
    { level },
    pretty({ sync: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }),
  );
}
