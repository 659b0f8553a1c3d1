import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { locateHostTool } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

export interface ToolRun {
  stdout: string;
  stderr: string;
}

/** What a cross toolchain is made of: its tools with their Debian packages, and the C library it links. */
export interface CrossToolchainParts<Tool extends string> {
  /** "AVR", "ARM": for the error message. */
  label: string;
  toolPackages: Record<Tool, string>;
  /** A file only the C library's package installs, with that package and what to call it. */
  library: { proof: string; package: string; name: string };
}

/** Wraps one cross toolchain's child processes; the only place that runs them. */
export class CrossToolchain<Tool extends string> {
  /** `searchPath` overrides PATH, which lets a test show what happens without the toolchain. */
  constructor(
    private readonly parts: CrossToolchainParts<Tool>,
    private readonly searchPath = process.env.PATH ?? '',
  ) {}

  /** Fails naming the Debian packages to install when a tool or the C library is missing. */
  ensureInstalled(tools: Tool[] = Object.keys(this.parts.toolPackages) as Tool[]): void {
    const { label, toolPackages, library } = this.parts;
    const missing = tools.filter((tool) => !locateHostTool(tool, this.searchPath));
    const packages = new Set<string>(missing.map((tool) => toolPackages[tool]));
    if (!existsSync(library.proof)) packages.add(library.package);
    if (packages.size === 0) return;
    const what = missing.length > 0 ? missing.join(', ') : library.name;
    throw new BoardfleetError(
      'toolchain-missing',
      `The ${label} toolchain is not installed (${what} not found). Install it with: sudo apt-get install ${[...packages].join(' ')}`,
    );
  }

  async run(tool: Tool, args: string[], cwd: string): Promise<ToolRun> {
    const executable = locateHostTool(tool, this.searchPath);
    if (!executable) this.ensureInstalled([tool]);
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
