import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { locateHostTool } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

/** Each AVR tool and the Debian package that provides it, for an error a person can act on. */
const TOOL_PACKAGES = {
  'avr-gcc': 'gcc-avr',
  'avr-g++': 'gcc-avr',
  'avr-gcc-ar': 'gcc-avr',
  'avr-objcopy': 'binutils-avr',
  'avr-size': 'binutils-avr',
} as const;

export type AvrTool = keyof typeof TOOL_PACKAGES;

const AVR_LIBC_PROOF = '/usr/lib/avr/include/avr/io.h';

export interface ToolRun {
  stdout: string;
  stderr: string;
}

/** Wraps the avr-gcc toolchain child processes; the only place that runs them. */
export class AvrToolchain {
  /** `searchPath` overrides PATH, which lets a test show what happens without the toolchain. */
  constructor(private readonly searchPath = process.env.PATH ?? '') {}

  /** Fails naming the Debian packages to install when a tool or avr-libc is missing. */
  async ensureInstalled(tools: AvrTool[] = Object.keys(TOOL_PACKAGES) as AvrTool[]): Promise<void> {
    const missing = tools.filter((tool) => !locateHostTool(tool, this.searchPath));
    const packages = new Set<string>(missing.map((tool) => TOOL_PACKAGES[tool]));
    if (!(await exists(AVR_LIBC_PROOF))) packages.add('avr-libc');
    if (packages.size > 0) {
      const names = [...packages].join(' ');
      const what = missing.length > 0 ? missing.join(', ') : 'avr-libc headers';
      throw new BoardfleetError(
        'toolchain-missing',
        `The AVR toolchain is not installed (${what} not found). Install it with: sudo apt-get install ${names}`,
      );
    }
  }

  async run(tool: AvrTool, args: string[], cwd: string): Promise<ToolRun> {
    const executable = locateHostTool(tool, this.searchPath);
    if (!executable) await this.ensureInstalled([tool]);
    return new Promise((resolve, reject) => {
      execFile(
        executable ?? tool,
        args,
        // A fixed locale keeps diagnostics (and anything parsed from them) stable.
        { cwd, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, PATH: this.searchPath, LC_ALL: 'C' } },
        (error, stdout, stderr) => {
          if (error) {
            reject(
              new BoardfleetError('build-failed', `${tool} failed:\n${stderr.trim() || error.message}`, {
                cause: error,
              }),
            );
            return;
          }
          resolve({ stdout, stderr });
        },
      );
    });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
