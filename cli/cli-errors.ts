import { isBoardfleetError } from '../protocol/errors.ts';

/** Prints an error as one line a person can act on and returns the process exit code. */
export function reportCliError(error: unknown): number {
  if (isBoardfleetError(error)) {
    process.stderr.write(`boardfleet: ${error.message}\n`);
    return 1;
  }
  if (error && typeof error === 'object' && 'code' in error && String(error.code).startsWith('commander.')) {
    // commander already printed its own usage message.
    return (error as { exitCode?: number }).exitCode ?? 1;
  }
  process.stderr.write(
    `boardfleet: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  return 2;
}
