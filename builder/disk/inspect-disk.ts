import { open } from 'node:fs/promises';
import { BoardfleetError } from '../../protocol/errors.ts';
import { byCodeUnit } from './file-tree.ts';
import { ImageTools } from './image-tools.repository.ts';

const SECTOR = 512;

export interface DiskPartition {
  /** 1 to 4, as in /dev/mmcblk0p1. */
  number: number;
  /** MBR partition type: 0x0c FAT32 (LBA), 0x0e FAT16 (LBA), 0x83 Linux. */
  type: number;
  bootable: boolean;
  startBytes: number;
  sizeBytes: number;
  /** What the kernel calls it for root=PARTUUID=…: the disk id in hex, a dash, the number. */
  partuuid: string;
}

export interface PartitionTable {
  /** The 32-bit MBR disk signature. */
  diskId: number;
  partitions: DiskPartition[];
}

/** `PARTUUID` of partition `number` on an MBR disk, as Linux derives it: `1234abcd-02`. */
export function partUuid(diskId: number, number: number): string {
  return `${diskId.toString(16).padStart(8, '0')}-${number.toString().padStart(2, '0')}`;
}

/** Reads the MBR of a disk image (no tool, no mount): the disk id and the used primary entries. */
export async function readPartitionTable(image: string): Promise<PartitionTable> {
  const mbr = Buffer.alloc(SECTOR);
  const handle = await open(image, 'r');
  try {
    const { bytesRead } = await handle.read(mbr, 0, SECTOR, 0);
    if (bytesRead < SECTOR) throw notMbr(image, 'shorter than one sector');
  } finally {
    await handle.close();
  }
  if (mbr.readUInt16LE(510) !== 0xaa55) throw notMbr(image, 'no 55 AA boot signature at byte 510');
  const diskId = mbr.readUInt32LE(440);
  const partitions: DiskPartition[] = [];
  for (let index = 0; index < 4; index++) {
    const entry = mbr.subarray(446 + index * 16, 462 + index * 16);
    const type = entry[4] ?? 0;
    if (type === 0) continue;
    const number = index + 1;
    partitions.push({
      number,
      type,
      bootable: entry[0] === 0x80,
      startBytes: entry.readUInt32LE(8) * SECTOR,
      sizeBytes: entry.readUInt32LE(12) * SECTOR,
      partuuid: partUuid(diskId, number),
    });
  }
  return { diskId, partitions };
}

export interface FatEntry {
  /** Absolute inside the filesystem: `/config.txt`, `/slot-a`. */
  path: string;
  type: 'file' | 'directory';
}

/**
 * Every file and directory on a FAT filesystem, sorted: on partition `partition` of a disk
 * image, or, without `partition`, in a bare partition image.
 */
export async function listFatFiles(
  image: string,
  partition?: number,
  tools = new ImageTools(),
): Promise<FatEntry[]> {
  const target = `${image}@@${await partitionOffset(image, partition)}`;
  const { stdout } = await tools.run('mdir', ['-/', '-b', '-i', target, '::/'], { env: MTOOLS_ENV });
  const entries: FatEntry[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('::/')) continue;
    const directory = line.endsWith('/');
    const path = line.slice(2, directory ? -1 : undefined);
    if (path) entries.push({ path, type: directory ? 'directory' : 'file' });
  }
  return entries.sort((a, b) => byCodeUnit(a.path, b.path));
}

/** A file's bytes from a FAT filesystem (`path` such as `/slot-a/cmdline.txt`). */
export async function readFatFile(
  image: string,
  partition: number | undefined,
  path: string,
  tools = new ImageTools(),
): Promise<Buffer> {
  const target = `${image}@@${await partitionOffset(image, partition)}`;
  return tools.runForBuffer(
    'mcopy',
    ['-n', '-i', target, `::${path.startsWith('/') ? '' : '/'}${path}`, '-'],
    {
      env: MTOOLS_ENV,
    },
  );
}

export interface FsEntry {
  /** Absolute inside the filesystem; `/` is the root directory. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** Permission bits, e.g. 0o755. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Squashfs listings only. */
  linkTarget?: string;
}

/** Every entry of a squashfs filesystem (`unsquashfs -lln`), on a disk image's partition or bare. */
export async function listSquashfs(
  image: string,
  partition?: number,
  tools = new ImageTools(),
): Promise<FsEntry[]> {
  const offset = await partitionOffset(image, partition);
  const { stdout } = await tools.run('unsquashfs', ['-lln', '-o', String(offset), image]);
  const entries: FsEntry[] = [];
  for (const line of stdout.split('\n')) {
    if (!line.trim()) continue;
    const match =
      /^(\S{10}) (\d+)\/(\d+)\s+(\d+|\d+,\s*\d+) \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(.*)$/.exec(line);
    if (!match)
      throw new BoardfleetError('image-unreadable', `unsquashfs listed a line it cannot parse: ${line}`);
    const [, permissions = '', uid = '', gid = '', size = '', rest = ''] = match;
    const type = permissions.startsWith('d')
      ? 'directory'
      : permissions.startsWith('-')
        ? 'file'
        : permissions.startsWith('l')
          ? 'symlink'
          : 'other';
    const arrow = type === 'symlink' ? rest.indexOf(' -> ') : -1;
    entries.push({
      path: (arrow >= 0 ? rest.slice(0, arrow) : rest) || '/',
      type,
      mode: permissionBits(permissions),
      uid: Number(uid),
      gid: Number(gid),
      size: size.includes(',') ? 0 : Number(size),
      ...(arrow >= 0 ? { linkTarget: rest.slice(arrow + 4) } : {}),
    });
  }
  return entries;
}

/** Every entry of an ext4 filesystem (debugfs `ls -p`, directory by directory), without mounting. */
export async function listExt4(
  image: string,
  partition?: number,
  tools = new ImageTools(),
): Promise<FsEntry[]> {
  // e2fsprogs opens a filesystem that starts inside a file with the `?offset=` suffix.
  const device = `${image}?offset=${await partitionOffset(image, partition)}`;
  const root: FsEntry = { path: '/', type: 'directory', mode: 0, uid: 0, gid: 0, size: 0 };
  const entries: FsEntry[] = [root];
  const visit = async (directory: string): Promise<void> => {
    const { stdout, stderr } = await tools.run('debugfs', ['-R', `ls -p "${directory}"`, device]);
    const problems = stderr.split('\n').filter((line) => line.trim() && !/^debugfs \d/.test(line));
    if (problems.length > 0) {
      throw new BoardfleetError(
        'image-unreadable',
        `debugfs cannot list ${directory} in ${device}: ${problems.join(' ')}`,
      );
    }
    const children: FsEntry[] = [];
    for (const line of stdout.split('\n')) {
      // `/inode/mode/uid/gid/name/size/`, mode in octal.
      const match = /^\/(\d+)\/([0-7]+)\/(\d+)\/(\d+)\/(.*)\/(\d*)\/$/.exec(line);
      if (!match) continue;
      const [, inode = '0', octal = '0', uid = '0', gid = '0', name = '', size = ''] = match;
      // lost+found lists its preallocated empty slots as inode 0.
      if (inode === '0') continue;
      const mode = Number.parseInt(octal, 8);
      // The root's own mode and owner show only as its `.` entry.
      if (name === '.' && directory === '/')
        entries[0] = { ...root, mode: mode & 0o7777, uid: Number(uid), gid: Number(gid) };
      if (name === '.' || name === '..') continue;
      const format = mode & 0o170000;
      children.push({
        path: `${directory === '/' ? '' : directory}/${name}`,
        type:
          format === 0o040000
            ? 'directory'
            : format === 0o100000
              ? 'file'
              : format === 0o120000
                ? 'symlink'
                : 'other',
        mode: mode & 0o7777,
        uid: Number(uid),
        gid: Number(gid),
        size: Number(size || 0),
      });
    }
    children.sort((a, b) => byCodeUnit(a.path, b.path));
    for (const child of children) {
      entries.push(child);
      if (child.type === 'directory') await visit(child.path);
    }
  };
  await visit('/');
  return entries;
}

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: '1' };

async function partitionOffset(image: string, partition: number | undefined): Promise<number> {
  if (partition === undefined) return 0;
  const table = await readPartitionTable(image);
  const found = table.partitions.find((candidate) => candidate.number === partition);
  if (!found) {
    throw new BoardfleetError(
      'image-unreadable',
      `${image} has no partition ${partition} (it has ${table.partitions.map((p) => p.number).join(', ') || 'none'})`,
    );
  }
  return found.startBytes;
}

function permissionBits(permissions: string): number {
  let mode = 0;
  const bits = permissions.slice(1);
  for (let index = 0; index < 9; index++) {
    const char = bits[index];
    if (char !== '-' && char !== 'S' && char !== 'T') mode |= 1 << (8 - index);
  }
  if ('sS'.includes(bits[2] ?? '-')) mode |= 0o4000;
  if ('sS'.includes(bits[5] ?? '-')) mode |= 0o2000;
  if ('tT'.includes(bits[8] ?? '-')) mode |= 0o1000;
  return mode;
}

function notMbr(image: string, why: string): BoardfleetError {
  return new BoardfleetError(
    'image-unreadable',
    `${image} does not start with an MBR partition table: ${why}`,
  );
}
