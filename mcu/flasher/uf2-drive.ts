import { open, readFile, realpath } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Uf2Board } from '../../boards/board-catalogue.ts';
import { decodeUf2, uf2TargetOf } from '../../lib/uf2.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

/**
 * Flashing a UF2 board (the Raspberry Pi Pico): with BOOTSEL held at power-up its boot ROM shows
 * a small FAT drive (label RPI-RP2, with INFO_UF2.TXT naming the chip); every UF2 block written
 * to it is programmed into flash, and after the last one the board reboots into the new firmware
 * and the drive goes away. There is nothing to read back: the drive stores no files.
 */

/** Filesystems a BOOTSEL drive can be mounted as; fusefat is how a FAT image is mounted without the kernel's vfat. */
const FAT_FILESYSTEMS = new Set(['vfat', 'msdos', 'fuse.fusefat']);

/** Errors that mean the drive went away under us: the boot ROM rebooting after the last block. */
const DRIVE_GONE_ERRORS = new Set(['EIO', 'ENODEV', 'ENXIO', 'ENOENT', 'ESHUTDOWN', 'ENOTCONN']);

/** Bytes per write: 8 blocks, so the progress bar moves on a 30 KB firmware too. */
const WRITE_CHUNK = 4096;

/** One line of /proc/self/mountinfo, the fields we need. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  /** The mounted device (`/dev/sdb1`), or what the filesystem calls its source (`fusefat`). */
  source: string;
}

/** A mounted drive that is the board's boot ROM. */
export interface BootselDrive {
  path: string;
  /** How it was recognised as the board's drive: its device's label, or its mount directory's name. */
  labelFrom: 'device-label' | 'mount-directory';
}

/** Where the search looks; tests point it elsewhere. */
export interface DriveSearchSources {
  mountInfoPath?: string;
  /** udev's links from volume labels to block devices. */
  byLabelDirectory?: string;
}

/** Reads /proc/self/mountinfo (see proc(5)): field 5 is the mount point, then after " - " the type and source. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after) continue;
    const mountPoint = before.split(' ')[4];
    const [fsType, source] = after.split(' ');
    if (!mountPoint || !fsType || source === undefined) continue;
    entries.push({ mountPoint: unescapeOctal(mountPoint), fsType, source: unescapeOctal(source) });
  }
  return entries;
}

/** The kernel writes space, tab, newline and backslash in mount paths as \040-style octal escapes. */
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The Board-ID line of a drive's INFO_UF2.TXT, or undefined when the file is missing or has none. */
export async function readDriveBoardId(drivePath: string, board: Uf2Board): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(join(drivePath, board.uf2.infoFile), 'latin1');
  } catch {
    return undefined;
  }
  return /^Board-ID:\s*(.*?)\s*$/m.exec(text)?.[1];
}

/**
 * Every mounted drive that is `board`'s BOOTSEL drive: a FAT mount whose volume label is the
 * board's (its device's /dev/disk/by-label link, or the mount directory as udisks names it) and
 * whose info file has the board's Board-ID. `others` are FAT mounts with the label but another
 * Board-ID or no info file, for the error message.
 */
export async function findBootselDrives(
  board: Uf2Board,
  sources: DriveSearchSources = {},
): Promise<{ drives: BootselDrive[]; others: string[] }> {
  const mounts = parseMountInfo(await readFile(sources.mountInfoPath ?? '/proc/self/mountinfo', 'utf8'));
  const labelledDevice = await realpath(
    join(sources.byLabelDirectory ?? '/dev/disk/by-label', board.uf2.volumeLabel),
  ).catch(() => undefined);
  const drives: BootselDrive[] = [];
  const others: string[] = [];
  for (const mount of mounts.filter((entry) => FAT_FILESYSTEMS.has(entry.fsType))) {
    const labelFrom =
      labelledDevice !== undefined &&
      (await realpath(mount.source).catch(() => mount.source)) === labelledDevice
        ? 'device-label'
        : basename(mount.mountPoint) === board.uf2.volumeLabel
          ? 'mount-directory'
          : undefined;
    if (!labelFrom) continue;
    const boardId = await readDriveBoardId(mount.mountPoint, board);
    if (boardId === board.uf2.boardId) drives.push({ path: mount.mountPoint, labelFrom });
    else
      others.push(
        `${mount.mountPoint} (${boardId === undefined ? `no ${board.uf2.infoFile}` : `Board-ID ${boardId}`})`,
      );
  }
  return { drives, others };
}

/**
 * The drive to copy to: `drive` as given when its info file names the board, else the one
 * BOOTSEL drive mounted. None or several is an error saying what to do.
 */
export async function findBootselDrive(
  board: Uf2Board,
  options: { drive?: string } & DriveSearchSources = {},
): Promise<string> {
  if (options.drive !== undefined) {
    const boardId = await readDriveBoardId(options.drive, board);
    if (boardId !== board.uf2.boardId) {
      throw new BoardfleetError(
        'uf2-drive-invalid',
        `${options.drive} is not ${board.name}'s BOOTSEL drive: ` +
          (boardId === undefined
            ? `it has no ${board.uf2.infoFile}`
            : `its ${board.uf2.infoFile} says Board-ID ${boardId}, not ${board.uf2.boardId}`),
      );
    }
    return options.drive;
  }
  const { drives, others } = await findBootselDrives(board, options);
  if (drives.length === 1) return drives[0]!.path;
  if (drives.length > 1) {
    throw new BoardfleetError(
      'uf2-drive-ambiguous',
      `${drives.length} ${board.uf2.volumeLabel} drives are mounted: ${drives.map((drive) => drive.path).join(', ')}. ` +
        `Say which with --drive DIR.`,
    );
  }
  throw new BoardfleetError(
    'uf2-drive-not-found',
    `No ${board.uf2.volumeLabel} drive is mounted: hold BOOTSEL while plugging the ${board.name} in, ` +
      `then run this again (or give --drive DIR)` +
      (others.length > 0 ? `. Not taken (not ${board.uf2.boardId}): ${others.join(', ')}` : ''),
  );
}

/** A UF2 file checked as `board`'s boot ROM would take it. */
export interface CheckedUf2 {
  bytes: Uint8Array;
  blockCount: number;
  /** The flash image the blocks make. */
  imageSize: number;
}

/** Reads and checks a UF2 for `board`: a corrupt file or one for another chip is refused, naming why. */
export async function readUf2File(path: string, board: Uf2Board): Promise<CheckedUf2> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new BoardfleetError('uf2-invalid', `Cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const decoded = decodeUf2(bytes, uf2TargetOf(board));
  if (!decoded.ok) {
    throw new BoardfleetError(
      'uf2-invalid',
      `${path} is not a UF2 the ${board.name} takes (${decoded.reason}): ${decoded.detail}`,
    );
  }
  return { bytes, blockCount: decoded.blockCount, imageSize: decoded.bytes.length };
}

export interface Uf2CopyResult {
  /** The file written on the drive. */
  path: string;
  bytesWritten: number;
  durationMs: number;
}

/**
 * Writes a checked UF2 onto a BOOTSEL drive, flushed to the device before it returns. The boot
 * ROM reboots the board once it has the last block, so the drive can vanish while the file is
 * being flushed or closed: that is success when every byte had been written.
 */
export async function copyUf2ToDrive(options: {
  uf2: CheckedUf2;
  drivePath: string;
  fileName: string;
  onProgress?: (bytesWritten: number, total: number) => void;
}): Promise<Uf2CopyResult> {
  const { uf2, drivePath, onProgress } = options;
  const path = join(drivePath, options.fileName);
  const total = uf2.bytes.length;
  const started = performance.now();
  let written = 0;
  const vanishedAtTheEnd = (error: unknown) =>
    written === total && DRIVE_GONE_ERRORS.has((error as NodeJS.ErrnoException).code ?? '');
  let file;
  try {
    file = await open(path, 'w');
  } catch (error) {
    throw writeFailed(path, written, total, error);
  }
  try {
    onProgress?.(0, total);
    while (written < total) {
      const { bytesWritten } = await file.write(uf2.bytes, written, Math.min(WRITE_CHUNK, total - written));
      written += bytesWritten;
      onProgress?.(written, total);
    }
    await file.sync();
  } catch (error) {
    if (!vanishedAtTheEnd(error)) throw writeFailed(path, written, total, error);
  } finally {
    await file.close().catch((error: unknown) => {
      if (!vanishedAtTheEnd(error)) throw writeFailed(path, written, total, error);
    });
  }
  return { path, bytesWritten: written, durationMs: performance.now() - started };
}

function writeFailed(path: string, written: number, total: number, cause: unknown): BoardfleetError {
  return new BoardfleetError(
    'uf2-write-failed',
    `Writing ${path} failed after ${written} of ${total} bytes: ${(cause as Error).message}. ` +
      `Hold BOOTSEL while plugging the board in again, then retry.`,
    { cause },
  );
}
