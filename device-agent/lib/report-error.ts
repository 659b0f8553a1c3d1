import { isBoardfleetError } from '../../protocol/errors.ts';

/**
 * Prints the error that stopped the program (the agent, or a CLI command) as one line on stderr
 * and returns the exit code: 1 for a `BoardfleetError` (its message says what to fix), 2 with the
 * stack for anything else.
 */
export function reportFatalError(error: unknown): number {
  if (isBoardfleetError(error)) {
    process.stderr.write(`boardfleet: ${error.message}\n`);
    return 1;
  }
  process.stderr.write(
    `boardfleet: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  return 2;
}
