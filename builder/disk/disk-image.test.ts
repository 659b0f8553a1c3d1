import { execFile } from 'node:child_process';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PARTITION } from '../../protocol/linux-ab-layout.ts';
import type { DiskImage } from './disk-image.ts';
import { makeDiskImage, MBR_PARTITION_TYPE, planPartitions } from './disk-image.ts';
import { EPOCH, MIB, makeBootTree, makeRootTree, scratchDirectory } from './disk.fixtures.ts';
import { makeExt4Partition } from './ext4-partition.ts';
import { makeFatPartition } from './fat-partition.ts';
import { listExt4, listFatFiles, listSquashfs, readFatFile, readPartitionTable } from './inspect-disk.ts';
import { makeSquashfs } from './squashfs.ts';

const DISK_ID = 0xb0a4df1e;
const SIZES = { boot: 8 * MIB, root: 4 * MIB, data: 4 * MIB };

describe('disk image', () => {
  let work: string;
  let image: DiskImage;
  let partitions: Parameters<typeof makeDiskImage>[0]['partitions'];

  beforeAll(async () => {
    work = await scratchDirectory('disk-image');
    await makeBootTree(join(work, 'boot'));
    await makeRootTree(join(work, 'root'));
    const plan = planPartitions([SIZES.boot, SIZES.root, SIZES.root, SIZES.data]);
    const fat = await makeFatPartition(join(work, 'boot'), join(work, 'boot.fat'), {
      sizeBytes: SIZES.boot,
      label: 'BOOT',
      volumeId: DISK_ID,
      epoch: EPOCH,
      hiddenSectors: plan[0]!.startBytes / 512,
    });
    const rootfs = await makeSquashfs(join(work, 'root'), join(work, 'root.squashfs'), {
      epoch: EPOCH,
      compression: 'zstd',
    });
    // Slot B starts out empty: all zeros, which the image keeps as a hole.
    await writeFile(join(work, 'empty'), '');
    const data = await makeExt4Partition(null, join(work, 'data.ext4'), {
      sizeBytes: SIZES.data,
      label: 'data',
      uuid: '0d1c2b3a-4958-4776-8594-a3b2c1d0e9f8',
      epoch: EPOCH,
    });
    partitions = [
      { file: fat.file, sizeBytes: SIZES.boot, type: 'fat16' },
      { file: rootfs.file, sizeBytes: SIZES.root, type: 'linux' },
      { file: join(work, 'empty'), sizeBytes: SIZES.root, type: 'linux' },
      { file: data.file, sizeBytes: SIZES.data, type: 'linux' },
    ];
    image = await makeDiskImage({ out: join(work, 'disk.img'), diskId: DISK_ID, partitions });
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('lays the four partitions of the A/B contract out back to back from 1 MiB', async () => {
    const table = await readPartitionTable(image.file);
    expect(table.diskId).toBe(DISK_ID);
    expect(table.partitions).toEqual([
      {
        number: PARTITION.boot,
        type: 0x0e,
        bootable: true,
        startBytes: MIB,
        sizeBytes: 8 * MIB,
        partuuid: 'b0a4df1e-01',
      },
      {
        number: PARTITION.rootA,
        type: 0x83,
        bootable: false,
        startBytes: 9 * MIB,
        sizeBytes: 4 * MIB,
        partuuid: 'b0a4df1e-02',
      },
      {
        number: PARTITION.rootB,
        type: 0x83,
        bootable: false,
        startBytes: 13 * MIB,
        sizeBytes: 4 * MIB,
        partuuid: 'b0a4df1e-03',
      },
      {
        number: PARTITION.data,
        type: 0x83,
        bootable: false,
        startBytes: 17 * MIB,
        sizeBytes: 4 * MIB,
        partuuid: 'b0a4df1e-04',
      },
    ]);
    expect(image).toMatchObject({ sizeBytes: 21 * MIB, diskId: DISK_ID, partitions: table.partitions });
    expect((await stat(image.file)).size).toBe(21 * MIB);
  });

  it('agrees with sfdisk reading the table back', async () => {
    const { stdout } = await promisify(execFile)('sfdisk', ['--json', image.file], {
      env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
    });
    const dump = JSON.parse(stdout) as {
      partitiontable: { id: string; partitions: Array<{ start: number; size: number; type: string }> };
    };
    expect(dump.partitiontable.id).toBe('0xb0a4df1e');
    expect(dump.partitiontable.partitions.map(({ start, size, type }) => [start, size, type])).toEqual([
      [2048, 16384, 'e'],
      [18432, 8192, '83'],
      [26624, 8192, '83'],
      [34816, 8192, '83'],
    ]);
  });

  it('puts each filesystem at its offset, readable without mounting', async () => {
    expect(await listFatFiles(image.file, PARTITION.boot)).toContainEqual({
      path: '/slot-a/cmdline.txt',
      type: 'file',
    });
    expect((await readFatFile(image.file, PARTITION.boot, '/config.txt')).toString()).toBe(
      'arm_64bit=1\nos_prefix=slot-a/\n',
    );
    expect((await readFatFile(image.file, PARTITION.boot, 'slot-a/cmdline.txt')).toString()).toBe(
      await readFile(join(work, 'boot', 'slot-a', 'cmdline.txt'), 'utf8'),
    );
    const root = await listSquashfs(image.file, PARTITION.rootA);
    expect(root.find((entry) => entry.path === '/bin/busybox')).toMatchObject({
      uid: 0,
      gid: 0,
      size: 300_000,
    });
    expect((await listExt4(image.file, PARTITION.data)).map((entry) => entry.path)).toEqual([
      '/',
      '/lost+found',
    ]);
    const whole = await readFile(image.file);
    expect(whole.subarray(13 * MIB, 17 * MIB).every((byte) => byte === 0)).toBe(true);
    expect(whole.subarray(MIB, 9 * MIB).equals(await readFile(partitions[0]!.file))).toBe(true);
  });

  it('stays sparse: all-zero runs are not written', async () => {
    const { blocks, size } = await stat(image.file);
    expect(blocks * 512).toBeLessThan(size / 2);
  });

  it('builds the same image again', async () => {
    const again = await makeDiskImage({ out: join(work, 'again.img'), diskId: DISK_ID, partitions });
    expect(again.sha256).toBe(image.sha256);
  });

  it('refuses a filesystem larger than its partition, and says which', async () => {
    await expect(
      makeDiskImage({
        out: join(work, 'small.img'),
        diskId: DISK_ID,
        partitions: [{ file: partitions[0]!.file, sizeBytes: 4 * MIB, type: 'fat16' }],
      }),
    ).rejects.toThrow(/boot\.fat is 8388608 bytes, more than the 4194304 bytes planned/);
  });

  it('names the partition a disk lacks', async () => {
    await expect(listFatFiles(image.file, 5)).rejects.toThrow(/has no partition 5 \(it has 1, 2, 3, 4\)/);
    expect(MBR_PARTITION_TYPE.fat32).toBe(0x0c);
  });
});
