import { expect, vi } from 'vitest';
import type { BuildReporter, BuildRequest, BuildRunner, BuiltFile } from '../../builder/build-runner.ts';

/** One call of the runner double, steered by the test. */
export interface ScriptedBuild {
  request: BuildRequest;
  reporter: BuildReporter;
  /** Ends the build with these files, as the image builder would. */
  succeed(files: BuiltFile[]): void;
  fail(error: Error): void;
}

/**
 * Stands in for the image builder so the queue's own behaviour can be tested: each build waits
 * until the test ends it, and ends at once when its AbortSignal fires (the builder's next step),
 * unless `ignoreAbort` is set.
 */
export function scriptedBuildRunnerDouble() {
  const started: ScriptedBuild[] = [];
  const double = {
    ignoreAbort: false,
    started,
    runner: ((request, reporter) =>
      new Promise<BuiltFile[]>((resolve, reject) => {
        if (!double.ignoreAbort) {
          if (reporter.signal.aborted) reject(reporter.signal.reason as Error);
          reporter.signal.addEventListener('abort', () => reject(reporter.signal.reason as Error), {
            once: true,
          });
        }
        started.push({ request, reporter, succeed: resolve, fail: reject });
      })) as BuildRunner,
    /** The n-th build the queue started (0-based), once it has started. */
    async build(index: number): Promise<ScriptedBuild> {
      await vi.waitFor(() => expect(started.length).toBeGreaterThan(index), { timeout: 5_000 });
      return started[index] as ScriptedBuild;
    },
  };
  return double;
}
