import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuiltFile, TreeEntry } from './file-tree.ts';
import { checkEpoch, createSparseFile, walkTree } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

export interface MakeFatPartitionOptions {
  /** Whole MiB; FAT16 up to 32 MiB, FAT32 above (the Pi firmware reads both). */
  sizeBytes: number;
  /** Volume label, at most 11 characters. */
  label: string;
  /** 32-bit volume serial number, derived by the caller from its inputs. */
  volumeId: number;
  /** Timestamp of every file and directory (seconds since 1970, UTC). */
  epoch: number;
  /** The partition's first sector on the disk, recorded in the boot sector ("hidden sectors"). */
  hiddenSectors?: number;
  tools?: ImageTools;
}

export interface BuiltFatPartition extends BuiltFile {
  fatBits: 16 | 32;
}

const MIB = 1024 * 1024;

/**
 * Builds a FAT boot partition image from `sourceDir` without mounting it: mkfs.vfat with fixed
 * serial and `--invariant`, then mtools creates the directories and copies the files in sorted
 * order. mtools stamps what it creates with SOURCE_DATE_EPOCH, so the source's own mtimes are
 * never read and need not be touched.
 */
export async function makeFatPartition(
  sourceDir: string,
  outFile: string,
  options: MakeFatPartitionOptions,
): Promise<BuiltFatPartition> {
  checkEpoch(options.epoch);
  const geometry = fatGeometry(options.sizeBytes);
  checkLabel(options.label);
  if (!Number.isInteger(options.volumeId) || options.volumeId < 0 || options.volumeId > 0xffff_ffff) {
    throw new BoardfleetError('image-bad-layout', `FAT volume id ${options.volumeId} is not a 32-bit number`);
  }
  const entries = await walkTree(sourceDir);
  checkFatNames(sourceDir, entries);
  const tools = options.tools ?? new ImageTools();
  await createSparseFile(outFile, options.sizeBytes);
  // --invariant must come first: it would otherwise override the volume id given with -i.
  await tools.run('mkfs.vfat', [
    '--invariant',
    '-F',
    String(geometry.fatBits),
    '-s',
    String(geometry.sectorsPerCluster),
    '-S',
    '512',
    '-h',
    String(options.hiddenSectors ?? 0),
    '-n',
    options.label,
    '-i',
    options.volumeId.toString(16).padStart(8, '0'),
    outFile,
  ]);
  const env = { MTOOLS_SKIP_CHECK: '1', SOURCE_DATE_EPOCH: String(options.epoch) };
  const directories = entries
    .filter((entry) => entry.type === 'directory')
    .map((entry) => `::/${entry.path}`);
  if (directories.length > 0) await tools.run('mmd', ['-i', outFile, ...directories], { env });
  const filesByDirectory = new Map<string, string[]>();
  for (const entry of entries) {
    if (entry.type !== 'file') continue;
    const slash = entry.path.lastIndexOf('/');
    const directory = slash < 0 ? '' : entry.path.slice(0, slash);
    filesByDirectory.set(directory, [
      ...(filesByDirectory.get(directory) ?? []),
      join(sourceDir, entry.path),
    ]);
  }
  for (const [directory, files] of filesByDirectory) {
    await tools.run('mcopy', ['-i', outFile, ...files, `::/${directory}${directory ? '/' : ''}`], { env });
  }
  return {
    file: outFile,
    size: (await stat(outFile)).size,
    sha256: await sha256File(outFile),
    fatBits: geometry.fatBits,
  };
}

/** FAT16 with 512-byte clusters up to 32 MiB; FAT32 above, with 4 KiB clusters from 260 MiB. */
function fatGeometry(sizeBytes: number): { fatBits: 16 | 32; sectorsPerCluster: number } {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes % MIB !== 0 || sizeBytes < 4 * MIB) {
    throw new BoardfleetError(
      'image-bad-layout',
      `a FAT partition of ${sizeBytes} bytes: the size must be a whole number of MiB, at least 4 MiB`,
    );
  }
  if (sizeBytes <= 32 * MIB) return { fatBits: 16, sectorsPerCluster: 1 };
  return { fatBits: 32, sectorsPerCluster: sizeBytes < 260 * MIB ? 1 : 8 };
}

function checkLabel(label: string): void {
  if (!/^[A-Za-z0-9 _\-!#$%&'(){}^@~]{1,11}$/.test(label)) {
    throw new BoardfleetError(
      'image-bad-layout',
      `FAT label "${label}": use 1 to 11 letters, digits, spaces or _-!#$%&'(){}^@~`,
    );
  }
}

/** FAT names ignore case: two source names that differ only in case would make mcopy ask what to do. */
function checkFatNames(sourceDir: string, entries: TreeEntry[]): void {
  const seen = new Map<string, string>();
  for (const entry of entries) {
    if (entry.type === 'symlink') {
      throw new BoardfleetError(
        'image-input-unsupported',
        `${join(sourceDir, entry.path)} is a symlink, which FAT cannot hold; put the file itself there`,
      );
    }
    const key = entry.path.toUpperCase();
    const other = seen.get(key);
    if (other !== undefined) {
      throw new BoardfleetError(
        'image-input-unsupported',
        `${join(sourceDir, other)} and ${join(sourceDir, entry.path)} differ only in case, which FAT cannot tell apart`,
      );
    }
    seen.set(key, entry.path);
  }
}
