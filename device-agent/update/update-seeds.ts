import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDirectory } from '../../lib/atomic-file.ts';

/**
 * A region of a file the device already has whose chunks a delta update may reuse: a whole file
 * (the last committed app bundle, a boot file) or part of one (the squashfs at the start of the
 * running slot's block device).
 */
export interface SeedSource {
  path: string;
  start: number;
  length: number;
}

/** A whole regular file as a seed; none for a missing or empty one. */
export function fileSeed(path: string): SeedSource[] {
  try {
    const stat = statSync(path);
    return stat.isFile() && stat.size > 0 ? [{ path, start: 0, length: stat.size }] : [];
  } catch {
    return [];
  }
}

/** Every regular file under `dir` (a slot's kernel, initramfs, device trees), in name order. */
export function filesUnder(dir: string): SeedSource[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort()
    .flatMap(fileSeed);
}

const SQUASHFS_MAGIC = Buffer.from('hsqs', 'latin1');
/** The superblock's `bytes_used` (u64, little-endian): the filesystem's length without padding. */
const BYTES_USED_OFFSET = 40;
/** mksquashfs pads the filesystem to 4 KiB, and the update payload carries it padded. */
const SQUASHFS_PAD = 4096;

/**
 * The squashfs a slot's device starts with, padded as mksquashfs pads it, so the region holds
 * exactly the bytes of `rootfs.squashfs` in the payload that installed it; none when the device
 * does not start with a squashfs (a slot never written, a test double). `capacity` is the
 * device's size (a block device's from sysfs; a regular file's from stat when null).
 */
export async function squashfsSeed(device: string, capacity: number | null): Promise<SeedSource[]> {
  const handle = await open(device, 'r');
  try {
    const superblock = Buffer.alloc(BYTES_USED_OFFSET + 8);
    const { bytesRead } = await handle.read(superblock, 0, superblock.length, 0);
    if (bytesRead < superblock.length || !superblock.subarray(0, 4).equals(SQUASHFS_MAGIC)) return [];
    const used = Number(superblock.readBigUInt64LE(BYTES_USED_OFFSET));
    const size = capacity ?? (await handle.stat()).size;
    const length = Math.min(Math.ceil(used / SQUASHFS_PAD) * SQUASHFS_PAD, size);
    return length > 0 ? [{ path: device, start: 0, length }] : [];
  } finally {
    await handle.close();
  }
}

/**
 * What the update manager keeps of the last committed version of a strategy without seeds of its
 * own (app bundles, VM images): the artifact file itself, `<kind>.artifact`, and for every
 * strategy the chunk index of that version, `<kind>.chunk-index` (sent as `?base=` so that the
 * server can answer with an index delta).
 */
export class KeptSeeds {
  constructor(private readonly dir: string) {}

  artifactPath(kind: string): string {
    return join(this.dir, `${kind}.artifact`);
  }

  indexPath(kind: string): string {
    return join(this.dir, `${kind}.chunk-index`);
  }

  /** The chunk index of the committed version, if it came with one. */
  baseIndex(kind: string): Buffer | null {
    return existsSync(this.indexPath(kind)) ? readFileSync(this.indexPath(kind)) : null;
  }

  /**
   * At commit: moves the committed download (when `keepArtifact`) and its chunk index (when it
   * came with one) into place of the previous version's; every other file of the download goes.
   */
  keep(
    kind: string,
    files: Record<'artifact' | 'index', string> & Record<string, string>,
    keepArtifact: boolean,
  ): void {
    mkdirSync(this.dir, { recursive: true });
    if (keepArtifact && existsSync(files.artifact)) renameSync(files.artifact, this.artifactPath(kind));
    if (existsSync(files.index)) renameSync(files.index, this.indexPath(kind));
    fsyncDirectory(this.dir);
    for (const file of Object.values(files)) rmSync(file, { force: true });
  }
}
