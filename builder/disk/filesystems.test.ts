import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EPOCH,
  MIB,
  makeBootTree,
  makeRootTree,
  perturbedCopy,
  pseudoRandomBytes,
  scratchDirectory,
} from './disk.fixtures.ts';
import { makeExt4Partition } from './ext4-partition.ts';
import { makeFatPartition } from './fat-partition.ts';
import { listExt4, listFatFiles, listSquashfs, readFatFile } from './inspect-disk.ts';
import { makeSquashfs } from './squashfs.ts';
import type { BuiltFile } from './file-tree.ts';

const UUID = '6c0a1f3e-2b4d-4e8f-9a7b-1c2d3e4f5a6b';

/**
 * Each filesystem is built from a tree, then again a few seconds later from a copy of it that
 * differs in path, inode numbers, mtimes, ctimes and owners: the images must be identical.
 */
describe('filesystem images are reproducible', () => {
  let work: string;
  const first: Record<string, BuiltFile> = {};
  const second: Record<string, BuiltFile> = {};

  const buildAll = async (label: 'one' | 'two', into: Record<string, BuiltFile>) => {
    const boot = join(work, `boot-${label}`);
    const root = join(work, `root-${label}`);
    into.squashfs = await makeSquashfs(root, join(work, `${label}.squashfs`), {
      epoch: EPOCH,
      compression: 'xz',
    });
    into.fat = await makeFatPartition(boot, join(work, `${label}.fat`), {
      sizeBytes: 8 * MIB,
      label: 'BOOT',
      volumeId: 0xb0a4df1e,
      epoch: EPOCH,
      hiddenSectors: 2048,
    });
    into.ext4 = await makeExt4Partition(root, join(work, `${label}.ext4`), {
      sizeBytes: 4 * MIB,
      label: 'data',
      uuid: UUID,
      epoch: EPOCH,
    });
    into.emptyExt4 = await makeExt4Partition(null, join(work, `${label}-empty.ext4`), {
      sizeBytes: 4 * MIB,
      label: 'data',
      uuid: UUID,
      epoch: EPOCH,
    });
  };

  beforeAll(async () => {
    work = await scratchDirectory('filesystems');
    await makeBootTree(join(work, 'boot-one'));
    await makeRootTree(join(work, 'root-one'));
    await buildAll('one', first);
    // FAT keeps times in 2-second steps: let the wall clock move past one before building again.
    await sleep(2_100);
    await perturbedCopy(join(work, 'boot-one'), join(work, 'boot-two'));
    await perturbedCopy(join(work, 'root-one'), join(work, 'root-two'));
    await buildAll('two', second);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it.each(['squashfs', 'fat', 'ext4', 'emptyExt4'])('builds the same %s image twice', (kind) => {
    expect(first[kind]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(second[kind]!.sha256).toBe(first[kind]!.sha256);
    expect(second[kind]!.size).toBe(first[kind]!.size);
  });

  it('makes partition images of exactly the size asked for', () => {
    expect(first.fat!.size).toBe(8 * MIB);
    expect(first.ext4!.size).toBe(4 * MIB);
  });

  it('squashfs: every entry owned by root, modes and symlinks kept', async () => {
    const entries = await listSquashfs(second.squashfs!.file);
    expect(entries.map((entry) => entry.path)).toEqual([
      '/',
      '/bin',
      '/bin/busybox',
      '/bin/sh',
      '/bin/su-helper',
      '/empty',
      '/etc',
      '/etc/boardfleet',
      '/etc/boardfleet/slots.json',
      '/etc/hostname',
      '/init',
    ]);
    for (const entry of entries) expect([entry.path, entry.uid, entry.gid]).toEqual([entry.path, 0, 0]);
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    expect(byPath.get('/bin/busybox')).toMatchObject({ type: 'file', mode: 0o755, size: 300_000 });
    expect(byPath.get('/bin/su-helper')).toMatchObject({ mode: 0o4755 });
    expect(byPath.get('/bin/sh')).toMatchObject({ type: 'symlink', linkTarget: 'busybox' });
    expect(byPath.get('/etc/hostname')).toMatchObject({ type: 'file', mode: 0o644, size: 11 });
  });

  it('ext4: every inode owned by root, with the tree as given', async () => {
    const entries = await listExt4(second.ext4!.file);
    expect(entries.map((entry) => entry.path)).toEqual([
      '/',
      '/bin',
      '/bin/busybox',
      '/bin/sh',
      '/bin/su-helper',
      '/empty',
      '/etc',
      '/etc/boardfleet',
      '/etc/boardfleet/slots.json',
      '/etc/hostname',
      '/init',
      '/lost+found',
    ]);
    for (const entry of entries) expect([entry.path, entry.uid, entry.gid]).toEqual([entry.path, 0, 0]);
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    expect(byPath.get('/')).toMatchObject({ type: 'directory', mode: 0o755 });
    expect(byPath.get('/bin/sh')).toMatchObject({ type: 'symlink' });
    expect(byPath.get('/bin/su-helper')).toMatchObject({ mode: 0o4755 });
    expect(byPath.get('/bin/busybox')).toMatchObject({ type: 'file', size: 300_000 });
    expect((await listExt4(second.emptyExt4!.file)).map((entry) => entry.path)).toEqual(['/', '/lost+found']);
  });

  it('FAT: the files, with their contents, the fixed serial and the hidden sectors', async () => {
    const fat = second.fat!.file;
    expect(second.fat).toMatchObject({ fatBits: 16 });
    expect(await listFatFiles(fat)).toEqual([
      { path: '/config.txt', type: 'file' },
      { path: '/slot-a', type: 'directory' },
      { path: '/slot-a/cmdline.txt', type: 'file' },
      { path: '/slot-a/overlays', type: 'directory' },
      { path: '/slot-a/overlays/disable-bt.dtbo', type: 'file' },
      { path: '/slot-a/vmlinuz', type: 'file' },
    ]);
    expect(await readFatFile(fat, undefined, '/slot-a/vmlinuz')).toEqual(
      await readFile(join(work, 'boot-one', 'slot-a', 'vmlinuz')),
    );
    const bootSector = (await readFile(fat)).subarray(0, 512);
    expect(bootSector.readUInt32LE(39)).toBe(0xb0a4df1e);
    expect(bootSector.readUInt32LE(28)).toBe(2048);
    expect(bootSector.subarray(43, 54).toString('ascii')).toBe('BOOT       ');
  });
});

describe('filesystem input checks', () => {
  let work: string;
  beforeAll(async () => {
    work = await scratchDirectory('filesystem-checks');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('refuses a FAT tree with names that differ only in case', async () => {
    const tree = join(work, 'case');
    await mkdir(tree);
    await writeFile(join(tree, 'Config.txt'), 'a');
    await writeFile(join(tree, 'config.txt'), 'b');
    await expect(
      makeFatPartition(tree, join(work, 'case.fat'), {
        sizeBytes: 8 * MIB,
        label: 'BOOT',
        volumeId: 1,
        epoch: EPOCH,
      }),
    ).rejects.toThrow(/differ only in case/);
  });

  it('refuses a FAT size that is not whole MiB, and a timestamp before 1980', async () => {
    const tree = join(work, 'plain');
    await mkdir(tree);
    await expect(
      makeFatPartition(tree, join(work, 'odd.fat'), {
        sizeBytes: 5_000_000,
        label: 'BOOT',
        volumeId: 1,
        epoch: EPOCH,
      }),
    ).rejects.toMatchObject({ code: 'image-bad-layout' });
    await expect(
      makeSquashfs(tree, join(work, 'old.squashfs'), { epoch: 0, compression: 'gzip' }),
    ).rejects.toMatchObject({ code: 'image-bad-epoch', message: expect.stringMatching(/SOURCE_DATE_EPOCH/) });
  });

  it('uses FAT32 above 32 MiB', async () => {
    const tree = join(work, 'fat32');
    await mkdir(tree);
    await writeFile(join(tree, 'config.txt'), 'x');
    const built = await makeFatPartition(tree, join(work, 'big.fat'), {
      sizeBytes: 40 * MIB,
      label: 'BOOT',
      volumeId: 7,
      epoch: EPOCH,
    });
    expect(built.fatBits).toBe(32);
    const bootSector = (await readFile(built.file)).subarray(0, 512);
    expect(bootSector.subarray(82, 90).toString('ascii')).toBe('FAT32   ');
    expect((await readFatFile(built.file, undefined, 'config.txt')).toString()).toBe('x');
  });
});

describe('squashfs layout for delta updates', () => {
  let work: string;
  beforeAll(async () => {
    work = await scratchDirectory('squashfs-layout');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('writes lastFiles after every other file, whatever characters their names hold', async () => {
    const tree = join(work, 'tree');
    await mkdir(join(tree, 'etc'), { recursive: true });
    // Incompressible, so each file's bytes appear as they are in the image.
    const files = {
      'a-first': pseudoRandomBytes(20_000, 1),
      'etc/motd (edited)': pseudoRandomBytes(20_000, 2),
      'z-last': pseudoRandomBytes(20_000, 3),
    };
    for (const [path, bytes] of Object.entries(files)) await writeFile(join(tree, path), bytes);
    const order = async (lastFiles: string[]) => {
      const out = join(work, 'out.squashfs');
      const image = await readFile(
        (await makeSquashfs(tree, out, { epoch: EPOCH, compression: 'gzip', lastFiles })).file,
      );
      const offsets = Object.entries(files).map(([path, bytes]) => ({
        path,
        at: image.indexOf(bytes.subarray(0, 64)),
      }));
      expect(offsets.every((file) => file.at > 0)).toBe(true);
      expect(await readdir(work)).toEqual(['out.squashfs', 'tree']);
      return offsets.sort((a, b) => a.at - b.at).map((file) => file.path);
    };
    // mksquashfs's own order (the middle name lands in the middle), then the file named last.
    expect((await order([]))[1]).toBe('etc/motd (edited)');
    expect((await order(['etc/motd (edited)']))[2]).toBe('etc/motd (edited)');
  });
});
