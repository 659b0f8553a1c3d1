import { reportFatalError } from '../device-agent/lib/report-error.ts';

/** Prints an error as one line a person can act on and returns the process exit code. */
export function reportCliError(error: unknown): number {
  if (error && typeof error === 'object' && 'code' in error && String(error.code).startsWith('commander.')) {
    // commander already printed its own usage message.
    return (error as { exitCode?: number }).exitCode ?? 1;
  }
  return reportFatalError(error);
}
