import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuiltFile } from './file-tree.ts';
import { byCodeUnit, checkEpoch, walkTree } from './file-tree.ts';

/** A character device node to put in the archive, which an unprivileged build cannot mknod. */
export interface CpioCharDevice {
  /** Relative, such as `dev/console`; missing parent directories are added (0755). */
  path: string;
  major: number;
  minor: number;
  /** Permission bits; 0600 when omitted. */
  mode?: number;
}

export interface WriteCpioOptions {
  /** Every entry's mtime (seconds since 1970). */
  epoch: number;
  /** `gzip` (the default) for an initramfs; `none` for the bare archive. */
  compression?: 'gzip' | 'none';
  charDevices?: CpioCharDevice[];
}

interface ArchiveEntry {
  path: string;
  mode: number;
  /** Bytes for symlinks (the target); a file path for regular files. */
  content?: Buffer | { file: string; size: number };
  rdevMajor?: number;
  rdevMinor?: number;
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

/**
 * Writes `sourceDir` as an initramfs: a newc ("070701") cpio archive with entries sorted by
 * path, owners 0:0, every mtime the epoch, inode numbers counted from 1 in archive order, and
 * symlinks and permission bits as in the source. Hard links become separate files (nlink 1),
 * so nothing depends on the build host's inode numbers. Written here rather than by GNU cpio,
 * whose `--reproducible` still takes owners and mtimes from the files and needs a sorted
 * `find` piped in. Node's gzip writes no name and a zero mtime in its header.
 */
export async function writeCpioNewc(
  sourceDir: string,
  outFile: string,
  options: WriteCpioOptions,
): Promise<BuiltFile> {
  checkEpoch(options.epoch);
  const entries = await archiveEntries(sourceDir, options.charDevices ?? []);
  const archive = Readable.from(archiveChunks(entries, options.epoch));
  const output = createWriteStream(outFile);
  if ((options.compression ?? 'gzip') === 'gzip') await pipeline(archive, createGzip({ level: 9 }), output);
  else await pipeline(archive, output);
  return { file: outFile, size: (await stat(outFile)).size, sha256: await sha256File(outFile) };
}

async function archiveEntries(sourceDir: string, charDevices: CpioCharDevice[]): Promise<ArchiveEntry[]> {
  const byPath = new Map<string, ArchiveEntry>();
  for (const entry of await walkTree(sourceDir)) {
    if (entry.type === 'directory') byPath.set(entry.path, { path: entry.path, mode: S_IFDIR | entry.mode });
    else if (entry.type === 'symlink') {
      byPath.set(entry.path, {
        path: entry.path,
        mode: S_IFLNK | 0o777,
        content: Buffer.from(entry.linkTarget ?? ''),
      });
    } else {
      if (entry.size > 0xffff_ffff) {
        throw new BoardfleetError(
          'image-input-unsupported',
          `${join(sourceDir, entry.path)} is over 4 GiB, more than cpio can hold`,
        );
      }
      byPath.set(entry.path, {
        path: entry.path,
        mode: S_IFREG | entry.mode,
        content: { file: join(sourceDir, entry.path), size: entry.size },
      });
    }
  }
  for (const device of charDevices) {
    const path = device.path.replace(/^\.?\/+/, '');
    if (!path || path.split('/').includes('..')) {
      throw new BoardfleetError(
        'image-bad-layout',
        `device node path "${device.path}" must be relative, inside the archive`,
      );
    }
    if (byPath.has(path)) {
      throw new BoardfleetError(
        'image-bad-layout',
        `device node ${path} would replace ${join(sourceDir, path)}`,
      );
    }
    const parts = path.split('/');
    for (let depth = 1; depth < parts.length; depth++) {
      const parent = parts.slice(0, depth).join('/');
      if (!byPath.has(parent)) byPath.set(parent, { path: parent, mode: S_IFDIR | 0o755 });
    }
    byPath.set(path, {
      path,
      mode: S_IFCHR | (device.mode ?? 0o600),
      rdevMajor: device.major,
      rdevMinor: device.minor,
    });
  }
  // A parent's path is a prefix of its children's, so sorting whole paths keeps parents first.
  return [...byPath.values()].sort((a, b) => byCodeUnit(a.path, b.path));
}

async function* archiveChunks(entries: ArchiveEntry[], epoch: number): AsyncGenerator<Buffer> {
  let inode = 0;
  for (const entry of entries) {
    inode += 1;
    const content = entry.content;
    const size = content === undefined ? 0 : Buffer.isBuffer(content) ? content.length : content.size;
    const isDirectory = (entry.mode & 0o170000) === S_IFDIR;
    yield header({
      inode,
      mode: entry.mode,
      nlink: isDirectory ? 2 : 1,
      mtime: epoch,
      size,
      rdevMajor: entry.rdevMajor ?? 0,
      rdevMinor: entry.rdevMinor ?? 0,
      name: entry.path,
    });
    if (content === undefined) continue;
    if (Buffer.isBuffer(content)) yield content;
    else {
      let copied = 0;
      for await (const chunk of createReadStream(content.file)) {
        copied += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      if (copied !== size) {
        throw new BoardfleetError(
          'image-input-changed',
          `${content.file} changed size while the initramfs was written`,
        );
      }
    }
    yield padding(size);
  }
  yield header({ inode: 0, mode: 0, nlink: 1, mtime: 0, size: 0, rdevMajor: 0, rdevMinor: 0, name: TRAILER });
}

function header(fields: {
  inode: number;
  mode: number;
  nlink: number;
  mtime: number;
  size: number;
  rdevMajor: number;
  rdevMinor: number;
  name: string;
}): Buffer {
  const name = Buffer.from(`${fields.name}\0`);
  const hex = (value: number) => value.toString(16).padStart(8, '0');
  const text = [
    '070701',
    hex(fields.inode),
    hex(fields.mode),
    hex(0), // uid
    hex(0), // gid
    hex(fields.nlink),
    hex(fields.mtime),
    hex(fields.size),
    hex(0), // devmajor
    hex(0), // devminor
    hex(fields.rdevMajor),
    hex(fields.rdevMinor),
    hex(name.length),
    hex(0), // check
  ].join('');
  // Header and name together are padded to a multiple of four bytes.
  return Buffer.concat([Buffer.from(text, 'ascii'), name, padding(text.length + name.length)]);
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}
