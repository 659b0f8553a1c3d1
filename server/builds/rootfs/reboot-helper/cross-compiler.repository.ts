import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { BoardfleetError } from '../../../../protocol/errors.ts';

/** The cross compiler, and the Debian packages that bring it and its C library. */
export const CROSS_COMPILER = {
  program: 'aarch64-linux-gnu-gcc',
  package: 'gcc-aarch64-linux-gnu',
  libcPackage: 'libc6-dev-arm64-cross',
} as const;

/** Wraps aarch64-linux-gnu-gcc: the one place the image builder runs a compiler. */
export class CrossCompiler {
  /** `searchPath` replaces PATH, which lets a test show what happens without the compiler. */
  constructor(readonly searchPath = process.env.PATH ?? '') {}

  /** The compiler's full path; a missing compiler is an error naming the Debian package. */
  async require(): Promise<string> {
    for (const directory of this.searchPath.split(delimiter)) {
      if (!directory) continue;
      const candidate = join(directory, CROSS_COMPILER.program);
      try {
        await access(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not in this directory
      }
    }
    throw new BoardfleetError(
      'tool-missing',
      `${CROSS_COMPILER.program} is not installed. Install it with: sudo apt-get install ${CROSS_COMPILER.package} ${CROSS_COMPILER.libcPackage}`,
    );
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
            reject(
              new BoardfleetError(
                'tool-failed',
                `${CROSS_COMPILER.program} ${args.join(' ')} failed:\n${stderr.trim() || error.message}`,
                { cause: error },
              ),
            );
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
    } catch {
      throw new BoardfleetError(
        'tool-missing',
        `${CROSS_COMPILER.program} has no static C library (libc.a). Install it with: sudo apt-get install ${CROSS_COMPILER.libcPackage}`,
      );
    }
    return path;
  }
}
