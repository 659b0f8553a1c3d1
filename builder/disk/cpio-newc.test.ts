import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeCpioNewc } from './cpio-newc.ts';
import { EPOCH, makeRootTree, perturbedCopy, scratchDirectory } from './disk.fixtures.ts';
import type { BuiltFile } from './file-tree.ts';

/** Runs Debian's cpio on an archive given on standard input. */
function cpio(args: string[], archive: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'cpio',
      args,
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout) => (error ? reject(error) : resolve(stdout)),
    );
    child.stdin?.end(archive);
  });
}

/** The newc headers of an archive, as the kernel's unpacker reads them. */
function headers(
  archive: Buffer,
): Array<{ name: string; ino: number; mode: number; uid: number; mtime: number }> {
  const found = [];
  for (let offset = 0; offset < archive.length;) {
    expect(archive.subarray(offset, offset + 6).toString()).toBe('070701');
    const field = (index: number) =>
      Number.parseInt(archive.subarray(offset + 6 + index * 8, offset + 14 + index * 8).toString(), 16);
    const nameSize = field(11);
    const name = archive.subarray(offset + 110, offset + 110 + nameSize - 1).toString();
    found.push({ name, ino: field(0), mode: field(1), uid: field(2), mtime: field(5) });
    if (name === 'TRAILER!!!') break;
    const dataStart = offset + 110 + nameSize + ((4 - ((110 + nameSize) % 4)) % 4);
    offset = dataStart + field(6) + ((4 - (field(6) % 4)) % 4);
  }
  return found;
}

describe('initramfs cpio archive', () => {
  let work: string;
  let gzipped: BuiltFile;
  let plain: Buffer;
  const devices = [{ path: 'dev/console', major: 5, minor: 1 }];

  beforeAll(async () => {
    work = await scratchDirectory('cpio');
    await makeRootTree(join(work, 'root'));
    gzipped = await writeCpioNewc(join(work, 'root'), join(work, 'initrd.img'), {
      epoch: EPOCH,
      charDevices: devices,
    });
    await writeCpioNewc(join(work, 'root'), join(work, 'initrd.cpio'), {
      epoch: EPOCH,
      compression: 'none',
      charDevices: devices,
    });
    plain = await readFile(join(work, 'initrd.cpio'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('is read back by GNU cpio: every entry in sorted order, root-owned, modes, symlinks and devices kept', async () => {
    const listing = (await cpio(['-itvn', '--quiet'], plain)).toString().trim().split('\n');
    const summary = listing.map((line) => {
      const columns = line.split(/\s+/);
      return `${columns[0]} ${columns[2]}/${columns[3]} ${columns.slice(columns[0]?.startsWith('c') ? 9 : 8).join(' ')}`;
    });
    expect(summary).toEqual([
      'drwxr-xr-x 0/0 bin',
      '-rwxr-xr-x 0/0 bin/busybox',
      'lrwxrwxrwx 0/0 bin/sh -> busybox',
      '-rwsr-xr-x 0/0 bin/su-helper',
      'drwxr-xr-x 0/0 dev',
      'crw------- 0/0 dev/console',
      'drwxr-xr-x 0/0 empty',
      'drwxr-xr-x 0/0 etc',
      'drwxr-xr-x 0/0 etc/boardfleet',
      '-rw-r--r-- 0/0 etc/boardfleet/slots.json',
      '-rw-r--r-- 0/0 etc/hostname',
      '-rwxr-xr-x 0/0 init',
    ]);
    expect(listing.find((line) => line.endsWith('dev/console'))).toMatch(/\s5,\s+1\s/);
    const busybox = await cpio(['-i', '--quiet', '--to-stdout', 'bin/busybox'], plain);
    expect(busybox.equals(await readFile(join(work, 'root', 'bin', 'busybox')))).toBe(true);
  });

  it('numbers inodes from 1 and stamps every entry with the epoch', () => {
    const entries = headers(plain);
    expect(entries.at(-1)!.name).toBe('TRAILER!!!');
    const real = entries.slice(0, -1);
    expect(real.map((entry) => entry.ino)).toEqual(real.map((_, index) => index + 1));
    expect(new Set(real.map((entry) => entry.mtime))).toEqual(new Set([EPOCH]));
    expect(new Set(real.map((entry) => entry.uid))).toEqual(new Set([0]));
  });

  it('is gzip with no name and no time in its header, around the same archive', async () => {
    const compressed = await readFile(gzipped.file);
    expect([...compressed.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    expect(compressed.readUInt32LE(4)).toBe(0);
    expect(gunzipSync(compressed).equals(plain)).toBe(true);
  });

  it('comes out byte for byte the same from a copy with other times, owners and inodes', async () => {
    await perturbedCopy(join(work, 'root'), join(work, 'copy'));
    const again = await writeCpioNewc(join(work, 'copy'), join(work, 'again.img'), {
      epoch: EPOCH,
      charDevices: devices,
    });
    expect(again.sha256).toBe(gzipped.sha256);
    const later = await writeCpioNewc(join(work, 'copy'), join(work, 'later.img'), {
      epoch: EPOCH + 1,
      charDevices: devices,
    });
    expect(later.sha256).not.toBe(gzipped.sha256);
  });

  it('refuses a device node over a file of the tree', async () => {
    await expect(
      writeCpioNewc(join(work, 'root'), join(work, 'bad.img'), {
        epoch: EPOCH,
        charDevices: [{ path: 'init', major: 1, minor: 3 }],
      }),
    ).rejects.toThrow(/device node init would replace .*init/);
  });
});
