import { stat } from 'node:fs/promises';
import { sha256File } from '../../lib/hash.ts';
import type { BuiltFile } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

export type ImageCompression = 'zstd' | 'xz';

/**
 * Fixed levels. Measured on a 705 MiB image holding 248 MiB of data (a 189 MB xz squashfs, a
 * FAT of binaries) on two busy cores: zstd -3 214.4 MB in 5 s, zstd -10 212.1 MB in 18-25 s,
 * zstd -19 208.8 MB in 446 s, xz -6 207.2 MB in 289 s, xz -9 198.7 MB in 701 s. The root
 * slot is already compressed, so the higher levels buy little; zstd -10 is the default, xz -6
 * is there for flashing tools that only take .xz.
 */
export const IMAGE_COMPRESSION_LEVEL = { zstd: 10, xz: 6 } as const;

export interface CompressImageOptions {
  /** `zstd` when omitted. */
  format?: ImageCompression;
  tools?: ImageTools;
}

/**
 * Compresses a disk image the same way on every machine: a fixed level and a single thread
 * (multi-threaded xz and zstd cut the input by thread count, so the output would depend on the
 * host).
 */
export async function compressImage(
  input: string,
  output: string,
  options: CompressImageOptions = {},
): Promise<BuiltFile> {
  const tools = options.tools ?? new ImageTools();
  const format = options.format ?? 'zstd';
  const level = `-${IMAGE_COMPRESSION_LEVEL[format]}`;
  if (format === 'zstd') {
    await tools.run('zstd', ['--quiet', '--force', '--single-thread', level, '-o', output, input]);
  } else {
    await tools.runToFile(
      'xz',
      ['--quiet', '--threads=1', level, '--check=crc64', '--stdout', input],
      output,
    );
  }
  return { file: output, size: (await stat(output)).size, sha256: await sha256File(output) };
}
