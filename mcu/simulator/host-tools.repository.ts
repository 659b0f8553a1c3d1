import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { findHostTool, missingPackage, toolFailure } from '../../lib/host-tools.ts';
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
  require(tool: HostTool): Promise<string> {
    return findHostTool(tool, HOST_TOOL_PACKAGES, this.searchPath);
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
            reject(toolFailure(tool, args, stderr, error));
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

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
