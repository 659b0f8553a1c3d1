import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { locateHostTool, missingPackage, toolFailure } from '../../lib/host-tools.ts';

/**
 * The compiler for each target (Debian's architecture names), and the Debian packages that bring it
 * and its C library: on a machine of the target's own architecture that is plain `gcc`.
 */
export const CROSS_COMPILERS = {
  arm64:
    process.arch === 'arm64'
      ? { program: 'aarch64-linux-gnu-gcc', package: 'gcc', libcPackage: 'libc6-dev' }
      : {
          program: 'aarch64-linux-gnu-gcc',
          package: 'gcc-aarch64-linux-gnu',
          libcPackage: 'libc6-dev-arm64-cross',
        },
  amd64:
    process.arch === 'x64'
      ? { program: 'x86_64-linux-gnu-gcc', package: 'gcc', libcPackage: 'libc6-dev' }
      : {
          program: 'x86_64-linux-gnu-gcc',
          package: 'gcc-x86-64-linux-gnu',
          libcPackage: 'libc6-dev-amd64-cross',
        },
} as const;
export type CompilerTarget = keyof typeof CROSS_COMPILERS;

/** Wraps `<triplet>-gcc`: the one place the image builder runs a compiler. */
export class CrossCompiler {
  /** `searchPath` replaces PATH, which lets a test show what happens without the compiler. */
  constructor(
    readonly searchPath = process.env.PATH ?? '',
    readonly target: CompilerTarget = 'arm64',
  ) {}

  private get tool() {
    return CROSS_COMPILERS[this.target];
  }

  /** The compiler's full path; a missing compiler is an error naming the Debian package. */
  async require(): Promise<string> {
    const compiler = locateHostTool(this.tool.program, this.searchPath);
    if (compiler) return compiler;
    // Both packages: the compiler alone cannot link the static programs the builder makes.
    throw missingPackage(this.tool.program, `${this.tool.package} ${this.tool.libcPackage}`);
  }

  /** Runs the compiler; a failure carries its stderr. Locale and paths are fixed for reproducible output. */
  async run(args: string[], cwd?: string): Promise<string> {
    const compiler = await this.require();
    return new Promise((resolve, reject) => {
      execFile(
        compiler,
        args,
        {
          cwd,
          env: { PATH: this.searchPath, LC_ALL: 'C', SOURCE_DATE_EPOCH: '0' },
          maxBuffer: 4 * 1024 * 1024,
        },
        (error, stdout, stderr) => {
          if (error) {
            reject(toolFailure(this.tool.program, args, stderr, error));
            return;
          }
          resolve(stdout);
        },
      );
    });
  }

  /** The static C library the compiler links against; missing when only the compiler is installed. */
  async staticLibc(): Promise<string> {
    const path = (await this.run(['-print-file-name=libc.a'])).trim();
    try {
      await access(path);
    } catch (error) {
      throw missingPackage(
        `the static C library (libc.a) of ${this.tool.program}`,
        this.tool.libcPackage,
        error,
      );
    }
    return path;
  }
}
