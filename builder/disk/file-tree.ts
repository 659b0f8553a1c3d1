import { lstat, open, readdir, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';

/** A filesystem or archive the disk layer wrote. */
export interface BuiltFile {
  file: string;
  size: number;
  sha256: string;
}

export interface TreeEntry {
  /** Path relative to the tree's root, `/`-separated, without a leading `./`. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  /** Permission bits (0o7777) of the source. */
  mode: number;
  size: number;
  /** The link's target, for symlinks. */
  linkTarget?: string;
}

/** Compares by UTF-16 code units, never by locale, so every host sorts the same way. */
export const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Every entry under `root`, depth first with each directory's names sorted, so that what a
 * filesystem or archive gets written from never depends on readdir order. Device nodes,
 * sockets and fifos are refused: images are built from plain files.
 */
export async function walkTree(root: string): Promise<TreeEntry[]> {
  const rootStat = await stat(root).catch((error: unknown) => {
    throw new BoardfleetError('image-input-missing', `${root} cannot be read: ${String(error)}`);
  });
  if (!rootStat.isDirectory()) throw new BoardfleetError('image-input-missing', `${root} is not a directory`);
  const entries: TreeEntry[] = [];
  const visit = async (relative: string): Promise<void> => {
    const names = (await readdir(join(root, relative))).sort(byCodeUnit);
    for (const name of names) {
      const path = relative ? `${relative}/${name}` : name;
      const info = await lstat(join(root, path));
      const mode = info.mode & 0o7777;
      if (info.isDirectory()) {
        entries.push({ path, type: 'directory', mode, size: 0 });
        await visit(path);
      } else if (info.isFile()) {
        entries.push({ path, type: 'file', mode, size: info.size });
      } else if (info.isSymbolicLink()) {
        const linkTarget = await readlink(join(root, path));
        entries.push({ path, type: 'symlink', mode, size: Buffer.byteLength(linkTarget), linkTarget });
      } else {
        throw new BoardfleetError(
          'image-input-unsupported',
          `${join(root, path)} is neither a file, a directory nor a symlink; images are built from plain files`,
        );
      }
    }
  };
  await visit('');
  return entries;
}

/** Refuses timestamps the formats cannot hold: cpio and ext4 keep 32 bits, FAT starts in 1980. */
export function checkEpoch(epoch: number): void {
  if (!Number.isSafeInteger(epoch) || epoch < 315_532_800 || epoch > 0xffff_ffff) {
    throw new BoardfleetError(
      'image-bad-epoch',
      `the build timestamp ${epoch} is not a whole number of seconds between 1980-01-01 and 2106 (set SOURCE_DATE_EPOCH to e.g. the last commit's time)`,
    );
  }
}

/** Removes `file` and creates it again as a sparse file of `sizeBytes`: no old contents survive. */
export async function createSparseFile(file: string, sizeBytes: number): Promise<void> {
  await rm(file, { force: true });
  const handle = await open(file, 'w');
  try {
    await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
}
