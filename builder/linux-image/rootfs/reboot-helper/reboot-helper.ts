import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MOUNTS, TRYBOOT_REBOOT_ARGUMENT } from '../../../../protocol/linux-ab-layout.ts';
import { buildStaticProgram } from '../../../native/static-program.ts';
import { CrossCompiler } from '../../../native/cross-compiler.repository.ts';

const SOURCE = fileURLToPath(new URL('./boardfleet-reboot.c', import.meta.url));

/**
 * Builds boardfleet-reboot (static aarch64) into `cacheDir` and returns its path. A warm cache
 * compiles nothing; the same inputs give the same bytes.
 */
export async function buildRebootHelper(cacheDir: string, compiler = new CrossCompiler()): Promise<string> {
  return buildStaticProgram({
    name: 'boardfleet-reboot',
    sources: [SOURCE],
    flags: [
      '-Os',
      '-Wall',
      '-Wextra',
      '-Werror',
      `-DTRYBOOT_ARGUMENT="${TRYBOOT_REBOOT_ARGUMENT}"`,
      `-DBOOT_MOUNT="${MOUNTS.boot}"`,
      `-DDATA_MOUNT="${MOUNTS.data}"`,
    ],
    sourceRoot: dirname(SOURCE),
    compiler,
    cacheDir,
  });
}
