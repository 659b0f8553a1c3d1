import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Host programs the simulator runs, each with the Debian package that provides it. */
export const HOST_TOOL_PACKAGES = {
  gcc: 'gcc',
  'pkg-config': 'pkg-config',
  'avr-gcc': 'gcc-avr',
  'avr-objcopy': 'binutils-avr',
  avrdude: 'avrdude',
} as const;

export type HostTool = keyof typeof HOST_TOOL_PACKAGES;

/** Where built bootloaders, the harness and bench boards live: `$BOARDFLEET_CACHE_DIR`, else the XDG cache. */
export function defaultCacheDirectory(): string {
  if (process.env.BOARDFLEET_CACHE_DIR) return process.env.BOARDFLEET_CACHE_DIR;
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'boardfleet');
}

/** Wraps the host's compilers and tools; the one place the simulator starts them. */
export class HostTools {
  /** `searchPath` overrides PATH, so a test can show what happens without a tool. */
  constructor(readonly searchPath = process.env.PATH ?? '') {}

  /** The tool's full path; a missing tool is an error naming the package to install. */
  async require(tool: HostTool): Promise<string> {
    for (const directory of this.searchPath.split(delimiter)) {
      if (!directory) continue;
      const candidate = join(directory, tool);
      try {
        await access(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not in this directory
      }
    }
    throw missingPackage(tool, HOST_TOOL_PACKAGES[tool]);
  }

  /** Runs a tool to completion (killed after `timeoutMs`, if given); a failure carries its stderr. */
  async run(
    tool: HostTool,
    args: string[],
    cwd?: string,
    timeoutMs = 0,
  ): Promise<{ stdout: string; stderr: string }> {
    const executable = await this.require(tool);
    return new Promise((resolve, reject) => {
      execFile(
        executable,
        args,
        {
          cwd,
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: 16 * 1024 * 1024,
          env: { ...process.env, PATH: this.searchPath, LC_ALL: 'C' },
        },
        (error, stdout, stderr) => {
          if (error) {
            reject(
              new BoardfleetError(
                'tool-failed',
                `${tool} ${args.join(' ')} failed:\n${stderr.trim() || error.message}`,
                {
                  cause: error,
                },
              ),
            );
            return;
          }
          resolve({ stdout, stderr });
        },
      );
    });
  }

  /** simavr's compiler flags; fails naming libsimavr-dev when its pkg-config file is absent. */
  async simavrFlags(): Promise<string[]> {
    try {
      const { stdout } = await this.run('pkg-config', ['--cflags', '--libs', 'simavr']);
      return stdout.trim().split(/\s+/).filter(Boolean);
    } catch (error) {
      if (error instanceof BoardfleetError && error.code === 'tool-missing') throw error;
      throw missingPackage('simavr (its pkg-config file)', 'libsimavr-dev', error);
    }
  }
}

export function missingPackage(what: string, debianPackage: string, cause?: unknown): BoardfleetError {
  return new BoardfleetError(
    'tool-missing',
    `${what} is not installed. Install it with: sudo apt-get install ${debianPackage}`,
    { cause },
  );
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
