import { execFile } from 'node:child_process';
import { CLI } from './agent-process.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunner {
  /** Runs `boardfleet ...args`; rejects, with the output in the message, if it exits non-zero. */
  ok(...args: string[]): Promise<CliResult>;
  /** Runs `boardfleet ...args`; rejects if it exits zero, else resolves with what it printed. */
  failing(...args: string[]): Promise<CliResult>;
}

/**
 * The real CLI (`cli/boardfleet.js`, as `npx boardfleet` runs it) in its own process, pointed at a
 * server by BOARDFLEET_URL and BOARDFLEET_TOKEN unless `env` says otherwise.
 */
export function cliRunner(options: {
  url?: string;
  token?: string;
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}): CliRunner {
  const run = (args: string[]) =>
    new Promise<CliResult>((resolve) => {
      execFile(
        process.execPath,
        [CLI, ...args],
        {
          cwd: options.cwd,
          timeout: options.timeoutMs ?? 120_000,
          maxBuffer: 64 * 1024 * 1024,
          env: {
            ...process.env,
            ...(options.url ? { BOARDFLEET_URL: options.url } : {}),
            ...(options.token ? { BOARDFLEET_TOKEN: options.token } : {}),
            ...options.env,
          },
        },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  const describeRun = (args: string[], result: CliResult) =>
    `boardfleet ${args.join(' ')} exited ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
  return {
    async ok(...args) {
      const result = await run(args);
      if (result.code !== 0) throw new Error(describeRun(args, result));
      return result;
    },
    async failing(...args) {
      const result = await run(args);
      if (result.code === 0) throw new Error(`expected a failure: ${describeRun(args, result)}`);
      return result;
    },
  };
}
