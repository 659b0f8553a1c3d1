import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { missingPackage } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { defaultCacheDirectory, fileExists, HostTools } from './host-tools.repository.ts';

const HARNESS_SOURCE = new URL('./harness/bench-board.c', import.meta.url).pathname;

/**
 * Compiles the bench-board harness (simavr + a pty + a control socket) for this host, or
 * returns the cached executable. The key hashes the source, gcc's version and simavr's flags.
 */
export async function buildHarness(options: { cacheDir?: string; tools?: HostTools } = {}): Promise<string> {
  const tools = options.tools ?? new HostTools();
  const simavrFlags = await tools.simavrFlags();
  const { stdout: compilerVersion } = await tools.run('gcc', ['--version']);
  const source = await readFile(HARNESS_SOURCE);
  const flags = ['-O2', '-Wall', '-Wextra'];
  const key = createHash('sha256')
    .update(source)
    .update(compilerVersion)
    .update(JSON.stringify([flags, simavrFlags]))
    .digest('hex')
    .slice(0, 16);
  const executable = join(options.cacheDir ?? defaultCacheDirectory(), 'harness', `bench-board-${key}`);
  if (await fileExists(executable)) return executable;

  await mkdir(dirname(executable), { recursive: true });
  const work = await mkdtemp(join(dirname(executable), '.build-'));
  try {
    const output = join(work, 'bench-board');
    try {
      await tools.run('gcc', [...flags, '-o', output, HARNESS_SOURCE, ...simavrFlags, '-lelf']);
    } catch (error) {
      const message = (error as Error).message;
      if (/cannot find -lelf|libelf/.test(message))
        throw missingPackage('libelf (for simavr)', 'libelf-dev', error);
      if (/simavr\/.*No such file/.test(message))
        throw missingPackage('simavr headers', 'libsimavr-dev', error);
      throw new BoardfleetError(
        'harness-build-failed',
        `Building the bench-board harness failed: ${message}`,
        {
          cause: error,
        },
      );
    }
    await rename(output, executable);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return executable;
}
