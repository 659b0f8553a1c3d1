import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MOUNTS, TRYBOOT_REBOOT_ARGUMENT } from '../../../../protocol/linux-ab-layout.ts';
import { sha256File } from '../../disk/file-tree.ts';
import { CrossCompiler } from './cross-compiler.repository.ts';

const SOURCE = fileURLToPath(new URL('./boardfleet-reboot.c', import.meta.url));

/**
 * Flags for a small static program whose bytes depend only on the source, the compiler and its
 * C library: no build id, no compiler ident, no symbols, no host paths.
 */
const FLAGS = [
  '-static',
  '-Os',
  '-s',
  '-fno-ident',
  '-Wall',
  '-Wextra',
  '-Werror',
  '-Wl,--build-id=none',
  `-DTRYBOOT_ARGUMENT="${TRYBOOT_REBOOT_ARGUMENT}"`,
  `-DBOOT_MOUNT="${MOUNTS.boot}"`,
  `-DDATA_MOUNT="${MOUNTS.data}"`,
];

/**
 * Builds boardfleet-reboot (static aarch64) into `cacheDir`, keyed by the sha256 of the source,
 * the flags, the compiler's version and its libc.a, and returns its path. A warm cache compiles
 * nothing; the same inputs give the same bytes.
 */
export async function buildRebootHelper(cacheDir: string, compiler = new CrossCompiler()): Promise<string> {
  const source = await readFile(SOURCE);
  const key = createHash('sha256')
    .update(source)
    .update(`\0${FLAGS.join('\0')}\0`)
    .update(await compiler.run(['--version']))
    .update(await sha256File(await compiler.staticLibc()))
    .digest('hex');
  const directory = join(cacheDir, 'reboot-helper', key);
  const output = join(directory, 'boardfleet-reboot');
  try {
    await access(output);
    return output;
  } catch {
    // not built yet
  }
  await mkdir(join(cacheDir, 'reboot-helper'), { recursive: true });
  const staging = await mkdtemp(join(cacheDir, 'reboot-helper', '.build-'));
  try {
    // The checkout's location must not reach the binary.
    await compiler.run(
      [...FLAGS, `-ffile-prefix-map=${dirname(SOURCE)}=.`, '-o', 'boardfleet-reboot', SOURCE],
      staging,
    );
    await rename(staging, directory).catch(async (error: NodeJS.ErrnoException) => {
      // Another build finished first with the same key: its output is the same bytes.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return output;
}
