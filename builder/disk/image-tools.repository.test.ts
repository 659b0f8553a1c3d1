import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDiskImage } from './disk-image.ts';
import { EPOCH, MIB, scratchDirectory } from './disk.fixtures.ts';
import { makeExt4Partition } from './ext4-partition.ts';
import { makeFatPartition } from './fat-partition.ts';
import type { ImageTool } from './image-tools.repository.ts';
import { defaultImageToolSearchPath, IMAGE_TOOL_PACKAGES, ImageTools } from './image-tools.repository.ts';
import { makeSquashfs } from './squashfs.ts';

describe('image tools', () => {
  let work: string;
  let tree: string;
  /** A PATH holding every image tool but the ones named. */
  const pathWithout = async (...missing: ImageTool[]): Promise<string> => {
    const directory = join(work, `without-${missing.join('-')}`);
    await mkdir(directory);
    const everywhere = new ImageTools();
    for (const tool of Object.keys(IMAGE_TOOL_PACKAGES) as ImageTool[]) {
      if (!missing.includes(tool)) await symlink(await everywhere.require(tool), join(directory, tool));
    }
    return directory;
  };

  beforeAll(async () => {
    work = await scratchDirectory('image-tools');
    tree = join(work, 'tree');
    await mkdir(tree);
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('names the Debian package of a missing mksquashfs', async () => {
    const tools = new ImageTools(await pathWithout('mksquashfs'));
    await expect(
      makeSquashfs(tree, join(work, 'x.squashfs'), { epoch: EPOCH, compression: 'xz', tools }),
    ).rejects.toMatchObject({
      code: 'tool-missing',
      message: expect.stringMatching(/^mksquashfs is not installed .*sudo apt-get install squashfs-tools$/),
    });
  });

  it('names the Debian package of a missing mkfs.vfat, and of missing mtools', async () => {
    const options = { sizeBytes: 4 * MIB, label: 'BOOT', volumeId: 1, epoch: EPOCH };
    await expect(
      makeFatPartition(tree, join(work, 'x.fat'), {
        ...options,
        tools: new ImageTools(await pathWithout('mkfs.vfat')),
      }),
    ).rejects.toThrow(/apt-get install dosfstools/);
    await mkdir(join(tree, 'slot-a'));
    await expect(
      makeFatPartition(tree, join(work, 'y.fat'), {
        ...options,
        tools: new ImageTools(await pathWithout('mmd', 'mcopy')),
      }),
    ).rejects.toThrow(/apt-get install mtools/);
  });

  it('names the Debian package of a missing sfdisk, and of a missing mke2fs', async () => {
    const partition = join(work, 'partition');
    await writeFile(partition, 'data');
    await expect(
      makeDiskImage({
        out: join(work, 'x.img'),
        diskId: 1,
        partitions: [{ file: partition, sizeBytes: MIB, type: 'linux' }],
        tools: new ImageTools(await pathWithout('sfdisk')),
      }),
    ).rejects.toThrow(/^sfdisk is not installed .*apt-get install fdisk$/);
    await expect(
      makeExt4Partition(null, join(work, 'x.ext4'), {
        sizeBytes: MIB,
        label: 'data',
        uuid: '0d1c2b3a-4958-4776-8594-a3b2c1d0e9f8',
        epoch: EPOCH,
        tools: new ImageTools(await pathWithout('mke2fs')),
      }),
    ).rejects.toThrow(/apt-get install e2fsprogs$/);
  });

  it('finds the sbin tools when PATH leaves the sbin directories out, as an ordinary user’s does', () => {
    const saved = process.env.PATH;
    process.env.PATH = '/usr/bin:/bin';
    try {
      expect(defaultImageToolSearchPath().split(':')).toEqual([
        '/usr/bin',
        '/bin',
        '/usr/local/sbin',
        '/usr/sbin',
        '/sbin',
      ]);
    } finally {
      process.env.PATH = saved;
    }
  });

  it('carries the tool’s own complaint when it fails', async () => {
    await expect(
      new ImageTools().run('mke2fs', ['-t', 'ext4', join(work, 'does-not-exist', 'x')]),
    ).rejects.toMatchObject({
      code: 'tool-failed',
      message: expect.stringMatching(
        /^mke2fs -t ext4 \S+ failed:\n.*does not exist and no size was specified/s,
      ),
    });
  });
});
