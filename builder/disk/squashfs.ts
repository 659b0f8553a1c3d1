import { stat } from 'node:fs/promises';
import { sha256File } from '../../lib/hash.ts';
import type { BuiltFile } from './file-tree.ts';
import { checkEpoch, walkTree } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

export type SquashfsCompression = 'xz' | 'zstd' | 'gzip';

export interface MakeSquashfsOptions {
  /** Every timestamp in the filesystem, and its creation time (seconds since 1970). */
  epoch: number;
  compression: SquashfsCompression;
  tools?: ImageTools;
}

/**
 * Builds a read-only root slot from `sourceDir`: owners 0:0, every time the epoch, no extended
 * attributes from the build host, entries sorted by mksquashfs itself. `-reproducible` makes
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
    '-quiet',
    '-no-progress',
  ]);
  return { file: outFile, size: (await stat(outFile)).size, sha256: await sha256File(outFile) };
}
