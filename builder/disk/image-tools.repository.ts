import { execFile, spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { delimiter } from 'node:path';
import { findHostTool, toolFailure } from '../../lib/host-tools.ts';

/** Every host program the disk layer runs, with the Debian package that provides it. */
export const IMAGE_TOOL_PACKAGES = {
  mksquashfs: 'squashfs-tools',
  unsquashfs: 'squashfs-tools',
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  mmd: 'mtools',
  mdir: 'mtools',
  sfdisk: 'fdisk',
  mke2fs: 'e2fsprogs',
  debugfs: 'e2fsprogs',
  xz: 'xz-utils',
  zstd: 'zstd',
} as const;

export type ImageTool = keyof typeof IMAGE_TOOL_PACKAGES;

/**
 * Debian keeps mkfs.vfat, sfdisk, mke2fs and debugfs in the sbin directories, which are not on
 * an ordinary user's PATH; they run fine unprivileged on image files, so look there too.
 */
export function defaultImageToolSearchPath(): string {
  const directories = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const sbin of ['/usr/local/sbin', '/usr/sbin', '/sbin']) {
    if (!directories.includes(sbin)) directories.push(sbin);
  }
  return directories.join(delimiter);
}

export interface ToolRunOptions {
  /** Variables added to the tool's environment (SOURCE_DATE_EPOCH, E2FSPROGS_FAKE_TIME…). */
  env?: Record<string, string>;
  /** Written to the tool's standard input (sfdisk reads its script there). */
  input?: string;
  cwd?: string;
}

/**
 * Wraps the filesystem and disk tools; the only place the disk layer starts child processes.
 * Tools get a minimal environment so that nothing from the caller's shell (XZ_OPT,
 * ZSTD_NBTHREADS, MKE2FS_CONFIG, MTOOLSRC, a local time zone…) can change what they write.
 */
export interface ToolOutput {
  stdout: string;
  stderr: string;
}

export class ImageTools {
  /** `searchPath` replaces PATH, which lets a test show what happens without a tool. */
  constructor(readonly searchPath = defaultImageToolSearchPath()) {}

  /** The tool's full path; a missing tool is an error naming the Debian package to install. */
  require(tool: ImageTool): Promise<string> {
    return findHostTool(tool, IMAGE_TOOL_PACKAGES, this.searchPath);
  }

  /** Runs a tool to completion; a failure carries the command line and its stderr. */
  async run(tool: ImageTool, args: string[], options: ToolRunOptions = {}): Promise<ToolOutput> {
    const { stdout, stderr } = await this.execute(tool, args, options);
    return { stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8') };
  }

  /** Like {@link run}, for tools whose output is file contents rather than text. */
  async runForBuffer(tool: ImageTool, args: string[], options: ToolRunOptions = {}): Promise<Buffer> {
    return (await this.execute(tool, args, options)).stdout;
  }

  /** Runs a tool with its standard output going to `outFile` (compressors write there). */
  async runToFile(tool: ImageTool, args: string[], outFile: string): Promise<void> {
    const executable = await this.require(tool);
    const output = await open(outFile, 'w');
    try {
      await new Promise<void>((resolve, reject) => {
        const child = spawn(executable, args, {
          stdio: ['ignore', output.fd, 'pipe'],
          env: this.environment(),
        });
        const stderr: Buffer[] = [];
        child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
        child.on('error', reject);
        child.on('close', (code, signal) => {
          if (code === 0) resolve();
          else {
            const detail = Buffer.concat(stderr).toString('utf8');
            reject(toolFailure(tool, args, detail, new Error(`exit ${code ?? signal}`)));
          }
        });
      });
    } finally {
      await output.close();
    }
  }

  private async execute(
    tool: ImageTool,
    args: string[],
    options: ToolRunOptions,
  ): Promise<{ stdout: Buffer; stderr: Buffer }> {
    const executable = await this.require(tool);
    return new Promise((resolve, reject) => {
      const child = execFile(
        executable,
        args,
        {
          cwd: options.cwd,
          encoding: 'buffer',
          maxBuffer: 256 * 1024 * 1024,
          env: this.environment(options.env),
        },
        (error, stdout, stderr) => {
          if (error) {
            reject(toolFailure(tool, args, stderr.toString('utf8'), error));
            return;
          }
          resolve({ stdout, stderr });
        },
      );
      // A tool that exits without reading its input closes the pipe; its exit status says what happened.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(options.input ?? '');
    });
  }

  private environment(extra: Record<string, string> = {}): Record<string, string> {
    return { PATH: this.searchPath, LC_ALL: 'C', TZ: 'UTC', ...extra };
  }
}
