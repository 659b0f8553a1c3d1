import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { getUf2Board } from '../../boards/board-catalogue.ts';
import { decodeUf2, encodeUf2, uf2TargetOf } from '../../lib/uf2.ts';
import { FatImageBootselDrive } from './doubles/fat-image-bootsel-drive.ts';
import {
  copyUf2ToDrive,
  findBootselDrive,
  findBootselDrives,
  parseMountInfo,
  readUf2File,
} from './uf2-drive.ts';

const pico = getUf2Board('pico');
/** Mounting, writing through FUSE and unmounting on a loaded machine. */
const MOUNT_TIMEOUT_MS = 120_000;

/** A 40 KB flash image, as a UF2 for the Pico: about the size of our firmware. */
function firmwareImage(): Uint8Array {
  return Uint8Array.from({ length: 40 * 1024 }, (_, index) => (index * 7 + (index >> 8)) & 0xff);
}

describe('parseMountInfo', () => {
  it('reads the mount point, type and source, unescaping the octal escapes of spaces', () => {
    const text =
      '36 35 98:0 / /media/ann/RPI-RP2 rw,nosuid shared:1 - vfat /dev/sdb1 rw,uid=1000\n' +
      '37 35 0:40 / /mnt/my\\040drive rw - fuse.fusefat fusefat rw\n';
    expect(parseMountInfo(text)).toEqual([
      { mountPoint: '/media/ann/RPI-RP2', fsType: 'vfat', source: '/dev/sdb1' },
      { mountPoint: '/mnt/my drive', fsType: 'fuse.fusefat', source: 'fusefat' },
    ]);
  });
});

describe('a FAT image mounted as the BOOTSEL drive', () => {
  let directory: string;
  let drive: FatImageBootselDrive;
  /** The real mount table, cut down to this test's mounts so that other mounts on the machine cannot count. */
  let mountInfoPath: string;

  async function mountDrive(boardId?: string): Promise<void> {
    drive = await FatImageBootselDrive.create({ directory, board: pico, ...(boardId ? { boardId } : {}) });
    await drive.mount();
    const ours = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .filter((line) => line.includes(directory));
    mountInfoPath = join(directory, 'mountinfo');
    await writeFile(mountInfoPath, `${ours.join('\n')}\n`);
  }

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'bootsel-drive-'));
  });

  afterEach(async () => {
    try {
      await drive?.unmount();
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });

  it(
    'is found by its label and INFO_UF2.TXT, and the UF2 written onto it reads back block for block',
    async () => {
      await mountDrive();
      const { drives } = await findBootselDrives(pico);
      expect(drives.map((found) => found.path)).toContain(drive.mountPoint);
      const drivePath = await findBootselDrive(pico, { mountInfoPath });
      expect(drivePath).toBe(drive.mountPoint);

      const image = firmwareImage();
      const uf2Path = join(directory, 'firmata.uf2');
      await writeFile(uf2Path, encodeUf2(image, uf2TargetOf(pico)));
      const uf2 = await readUf2File(uf2Path, pico);
      const progress: number[] = [];
      const result = await copyUf2ToDrive({
        uf2,
        drivePath,
        fileName: 'firmata.uf2',
        onProgress: (written) => progress.push(written),
      });
      expect(result.bytesWritten).toBe(uf2.bytes.length);
      expect(progress.at(-1)).toBe(uf2.bytes.length);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));

      await drive.unmount();
      const readBack = await drive.readBack('firmata.uf2');
      expect(Buffer.compare(readBack, Buffer.from(uf2.bytes))).toBe(0);
      const decoded = decodeUf2(readBack, uf2TargetOf(pico));
      expect(decoded.ok && Buffer.from(decoded.bytes.subarray(0, image.length))).toEqual(Buffer.from(image));
    },
    MOUNT_TIMEOUT_MS,
  );

  it(
    'is not taken when its INFO_UF2.TXT names another board, and the error says so',
    async () => {
      await mountDrive('NRF52-BOOT');
      const { drives, others } = await findBootselDrives(pico, { mountInfoPath });
      expect(drives).toEqual([]);
      expect(others).toEqual([`${drive.mountPoint} (Board-ID NRF52-BOOT)`]);
      await expect(findBootselDrive(pico, { mountInfoPath })).rejects.toMatchObject({
        code: 'uf2-drive-not-found',
        message: expect.stringContaining(`Not taken (not RPI-RP2): ${drive.mountPoint}`),
      });
    },
    MOUNT_TIMEOUT_MS,
  );

  it(
    'refuses a corrupt UF2 or one for another chip before anything is written',
    async () => {
      await mountDrive();
      const uf2 = encodeUf2(firmwareImage(), uf2TargetOf(pico));
      const cutShort = join(directory, 'cut-short.uf2');
      await writeFile(cutShort, uf2.subarray(0, uf2.length - 512));
      await expect(readUf2File(cutShort, pico)).rejects.toMatchObject({
        code: 'uf2-invalid',
        message: expect.stringContaining('incomplete'),
      });
      const otherChip = join(directory, 'samd21.uf2');
      await writeFile(otherChip, encodeUf2(firmwareImage(), { ...uf2TargetOf(pico), familyId: 0x68ed2b88 }));
      await expect(readUf2File(otherChip, pico)).rejects.toMatchObject({
        code: 'uf2-invalid',
        message: expect.stringContaining('wrong-family'),
      });
      // fusefat lists the volume label as an entry too: only the absence of a .uf2 matters.
      expect((await readdir(drive.mountPoint)).filter((name) => /\.uf2$/i.test(name))).toEqual([]);
    },
    MOUNT_TIMEOUT_MS,
  );
});

describe('finding the BOOTSEL drive without one', () => {
  let directory: string;

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'no-bootsel-drive-'));
  });

  afterEach(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('says to hold BOOTSEL when no FAT drive is mounted', async () => {
    const mountInfoPath = join(directory, 'mountinfo');
    await writeFile(mountInfoPath, '22 1 0:21 / /proc rw - proc proc rw\n');
    await expect(findBootselDrive(pico, { mountInfoPath })).rejects.toMatchObject({
      code: 'uf2-drive-not-found',
      message:
        'No RPI-RP2 drive is mounted: hold BOOTSEL while plugging the Raspberry Pi Pico in, then run this again (or give --drive DIR)',
    });
  });

  it("finds a drive mounted under another name by its device's /dev/disk/by-label link", async () => {
    // A file stands for the block device, a directory for where it is mounted.
    const device = join(directory, 'sdb1');
    await writeFile(device, '');
    const byLabelDirectory = join(directory, 'by-label');
    await mkdir(byLabelDirectory);
    await symlink(device, join(byLabelDirectory, 'RPI-RP2'));
    const mountPoint = join(directory, 'media', 'pico drive');
    await mkdir(mountPoint, { recursive: true });
    await writeFile(join(mountPoint, 'INFO_UF2.TXT'), 'UF2 Bootloader v3.0\nBoard-ID: RPI-RP2\n');
    const mountInfoPath = join(directory, 'mountinfo');
    await writeFile(
      mountInfoPath,
      `40 26 8:17 / ${mountPoint.replace(' ', '\\040')} rw - vfat ${device} rw\n`,
    );
    expect(await findBootselDrives(pico, { mountInfoPath, byLabelDirectory })).toEqual({
      drives: [{ path: mountPoint, labelFrom: 'device-label' }],
      others: [],
    });
  });

  it("refuses a --drive directory without the boot ROM's INFO_UF2.TXT", async () => {
    await expect(findBootselDrive(pico, { drive: directory })).rejects.toMatchObject({
      code: 'uf2-drive-invalid',
      message: `${directory} is not Raspberry Pi Pico's BOOTSEL drive: it has no INFO_UF2.TXT`,
    });
  });

  it('names the file and how far it got when the drive cannot be written', async () => {
    const uf2Path = join(directory, 'firmata.uf2');
    await writeFile(uf2Path, encodeUf2(firmwareImage(), uf2TargetOf(pico)));
    const uf2 = await readUf2File(uf2Path, pico);
    await expect(
      copyUf2ToDrive({ uf2, drivePath: join(directory, 'unplugged'), fileName: 'firmata.uf2' }),
    ).rejects.toMatchObject({
      code: 'uf2-write-failed',
      message: expect.stringContaining(`after 0 of ${uf2.bytes.length} bytes`),
    });
  });
});
