import { rm, stat, writeFile } from 'node:fs/promises';
import { sha256File } from '../../lib/hash.ts';
import type { BuiltFile } from './file-tree.ts';
import { checkEpoch, walkTree } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

export type SquashfsCompression = 'xz' | 'zstd' | 'gzip';

export interface MakeSquashfsOptions {
  /** Every timestamp in the filesystem, and its creation time (seconds since 1970). */
  epoch: number;
  compression: SquashfsCompression;
  /**
   * Paths relative to `sourceDir` written after every other file: those that change from one
   * version to the next when nothing else does. Their blocks then sit beside the tables at the
   * end of the image, which change with any edit anyway: a delta update between two such
   * versions finds one changed region, not two (a chunk or two less to fetch).
   */
  lastFiles?: string[];
  tools?: ImageTools;
}

/**
 * Builds a read-only root slot from `sourceDir`: owners 0:0, every time the epoch, no extended
 * attributes from the build host, entries sorted by mksquashfs itself but `lastFiles`. `-reproducible` makes
 * the output independent of the thread count, so the processor count is left alone.
 */
export async function makeSquashfs(
  sourceDir: string,
  outFile: string,
  options: MakeSquashfsOptions,
): Promise<BuiltFile> {
  checkEpoch(options.epoch);
  // Walking first refuses device nodes and fifos with a clear message, as the other builders do.
  await walkTree(sourceDir);
  const tools = options.tools ?? new ImageTools();
  const time = String(options.epoch);
  const sortFile = `${outFile}.sort`;
  const lastFiles = (options.lastFiles ?? []).filter((path) => !path.includes('\n'));
  // mksquashfs writes higher priorities first; the default is 0. A line holds a path, backslash
  // escaped, and its priority; a name with a newline cannot be written there and stays in place.
  await writeFile(sortFile, lastFiles.map((path) => `${path.replace(/[^\w./-]/g, '\\$&')} -1\n`).join(''));
  try {
    await tools.run('mksquashfs', [
      sourceDir,
      outFile,
      '-noappend',
      '-reproducible',
      '-all-root',
      '-no-xattrs',
      '-mkfs-time',
      time,
      '-all-time',
      time,
      '-comp',
      options.compression,
      '-b',
      '131072',
      '-sort',
      sortFile,
      '-quiet',
      '-no-progress',
    ]);
  } finally {
    await rm(sortFile, { force: true });
  }
  return { file: outFile, size: (await stat(outFile)).size, sha256: await sha256File(outFile) };
}
