import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { missingPackage } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { defaultCacheDirectory, fileExists, HostTools } from './host-tools.repository.ts';

const harnessFile = (name: string) => new URL(`./harness/${name}`, import.meta.url).pathname;
/** Every source file a host program may include: a change to any of them makes a new build. */
const PTY_PORT_SOURCES = ['pty-port.c', 'pty-port.h'];

interface BuildOptions {
  cacheDir?: string;
  tools?: HostTools;
}

/**
 * Compiles the bench-board harness (simavr + a pty + a control socket) for this host, or
 * returns the cached executable.
 */
export async function buildHarness(options: BuildOptions = {}): Promise<string> {
  const tools = options.tools ?? new HostTools();
  return buildHostProgram('bench-board', ['bench-board.c', 'pty-port.c'], await tools.simavrFlags(), {
    ...options,
    tools,
  });
}

/** Compiles the pty relay that gives a simulator running in Node (the rp2040js Pico) its serial port. */
export function buildPtyRelay(options: BuildOptions = {}): Promise<string> {
  return buildHostProgram('pty-relay', ['pty-relay.c', 'pty-port.c'], [], options);
}

/** Cached by a hash of the sources, gcc's version and the flags. */
async function buildHostProgram(
  name: string,
  sources: string[],
  libraryFlags: string[],
  options: BuildOptions,
): Promise<string> {
  const tools = options.tools ?? new HostTools();
  const { stdout: compilerVersion } = await tools.run('gcc', ['--version']);
  const flags = ['-O2', '-Wall', '-Wextra'];
  const key = createHash('sha256');
  for (const source of new Set([...sources, ...PTY_PORT_SOURCES])) {
    key.update(source).update(await readFile(harnessFile(source)));
  }
  key.update(compilerVersion).update(JSON.stringify([flags, libraryFlags]));
  const executable = join(
    options.cacheDir ?? defaultCacheDirectory(),
    'harness',
    `${name}-${key.digest('hex').slice(0, 16)}`,
  );
  if (await fileExists(executable)) return executable;

  await mkdir(dirname(executable), { recursive: true });
  const work = await mkdtemp(join(dirname(executable), '.build-'));
  try {
    const output = join(work, name);
    try {
      const libraries = libraryFlags.length > 0 ? [...libraryFlags, '-lelf'] : [];
      await tools.run('gcc', [...flags, '-o', output, ...sources.map(harnessFile), ...libraries]);
    } catch (error) {
      const message = (error as Error).message;
      if (/cannot find -lelf|libelf/.test(message))
        throw missingPackage('libelf (for simavr)', 'libelf-dev', error);
      if (/simavr\/.*No such file/.test(message))
        throw missingPackage('simavr headers', 'libsimavr-dev', error);
      throw new BoardfleetError('harness-build-failed', `Building ${name} failed: ${message}`, {
        cause: error,
      });
    }
    await rename(output, executable);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return executable;
}
