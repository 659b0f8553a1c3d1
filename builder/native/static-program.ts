import { access, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256, sha256File } from '../../lib/hash.ts';
import { hashOf } from '../steps/input-hash.ts';
import type { CrossCompiler } from './cross-compiler.repository.ts';

/**
 * Flags for a static program whose bytes depend only on the sources, the compiler and its C
 * library: no build id, no compiler ident, no symbols.
 */
export const REPRODUCIBLE_STATIC_FLAGS = ['-static', '-s', '-fno-ident', '-Wl,--build-id=none'];

export interface StaticProgramInput {
  /** The program's file name, and the cache folder it is kept under. */
  name: string;
  sources: string[];
  /** Compiler flags besides {@link REPRODUCIBLE_STATIC_FLAGS} (optimisation, warnings, -D…). */
  flags: string[];
  /** A folder whose path must not reach the binary (mapped to `.` in debug paths and __FILE__). */
  sourceRoot: string;
  compiler: CrossCompiler;
  cacheDir: string;
}

/**
 * Compiles C sources into one static program for the compiler's target, cached under
 * `<cacheDir>/static-programs/<name>/<key>` where the key hashes the sources, the flags, the
 * compiler's version and its libc.a. A warm cache compiles nothing; the same inputs give the same bytes.
 */
export async function buildStaticProgram(input: StaticProgramInput): Promise<string> {
  const flags = [...REPRODUCIBLE_STATIC_FLAGS, ...input.flags, `-ffile-prefix-map=${input.sourceRoot}=.`];
  const sources: string[] = [];
  for (const source of input.sources) sources.push(sha256(await readFile(source)));
  const key = hashOf({
    sources,
    target: input.compiler.target,
    flags,
    compiler: await input.compiler.run(['--version']),
    libc: await sha256File(await input.compiler.staticLibc()),
  });
  const parent = join(input.cacheDir, 'static-programs', input.name);
  const directory = join(parent, key);
  const output = join(directory, input.name);
  try {
    await access(output);
    return output;
  } catch {
    // not built yet
  }
  await mkdir(parent, { recursive: true });
  const staging = await mkdtemp(join(parent, '.build-'));
  try {
    await input.compiler.run([...flags, '-o', input.name, ...input.sources], staging);
    await rename(staging, directory).catch((error: NodeJS.ErrnoException) => {
      // Another build finished first with the same key: its output is the same bytes.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return output;
}
