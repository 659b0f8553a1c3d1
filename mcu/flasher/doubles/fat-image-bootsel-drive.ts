import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Uf2Board } from '../../../boards/board-catalogue.ts';
import { findHostTool, type ToolPackages } from '../../../lib/host-tools.ts';
import { parseMountInfo } from '../uf2-drive.ts';

const run = promisify(execFile);

const TOOLS: ToolPackages<'mkfs.vfat' | 'mcopy' | 'fusefat' | 'mount' | 'umount'> = {
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  fusefat: 'fusefat',
  mount: 'mount',
  umount: 'mount',
};
const SEARCH_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin`;

/**
 * A FAT image that stands for a board's BOOTSEL drive: made like the boot ROM's drive (its volume
 * label, an INFO_UF2.TXT with the Board-ID), mounted at a directory named after the label as
 * udisks would, and read back with mtools once unmounted, so what our code wrote is what reached
 * the "device". Mounted with the kernel's vfat through a loop device where the kernel has vfat,
 * else with Debian's fusefat.
 */
export class FatImageBootselDrive {
  private fuse: ChildProcess | undefined;
  private fuseExit: Promise<void> | undefined;
  private mounted = false;

  private constructor(
    readonly imagePath: string,
    readonly mountPoint: string,
  ) {}

  /** Makes the image in `directory`; `boardId` lets a test make another chip's drive with the same label. */
  static async create(options: {
    directory: string;
    board: Uf2Board;
    boardId?: string;
    sizeBytes?: number;
  }): Promise<FatImageBootselDrive> {
    const { directory, board } = options;
    const imagePath = join(directory, 'bootsel-drive.img');
    const mountPoint = join(directory, 'media', board.uf2.volumeLabel);
    await mkdir(mountPoint, { recursive: true });
    await writeFile(imagePath, new Uint8Array(0));
    await truncate(imagePath, options.sizeBytes ?? 4 * 1024 * 1024);
    await run(await tool('mkfs.vfat'), ['-n', board.uf2.volumeLabel, imagePath]);
    // As the RP2040 boot ROM writes it.
    const info = join(directory, board.uf2.infoFile);
    await writeFile(
      info,
      `UF2 Bootloader v3.0\r\nModel: Raspberry Pi RP2\r\nBoard-ID: ${options.boardId ?? board.uf2.boardId}\r\n`,
    );
    await run(await tool('mcopy'), ['-i', imagePath, info, `::${board.uf2.infoFile}`]);
    return new FatImageBootselDrive(imagePath, mountPoint);
  }

  async mount(): Promise<void> {
    const filesystems = await readFile('/proc/filesystems', 'utf8');
    if (/\tvfat$/m.test(filesystems)) {
      await run(await tool('mount'), ['-t', 'vfat', '-o', 'loop', this.imagePath, this.mountPoint]);
    } else {
      await this.mountWithFuse();
    }
    this.mounted = true;
  }

  /** Unmounts, waiting until fusefat has written everything back to the image. Safe to call twice. */
  async unmount(): Promise<void> {
    if (!this.mounted) return;
    await run(await tool('umount'), [this.mountPoint]);
    this.mounted = false;
    await this.fuseExit;
    this.fuse = undefined;
  }

  /** A file of the image, read with mtools (unmount first). */
  async readBack(fileName: string): Promise<Buffer> {
    const { stdout } = await run(await tool('mcopy'), ['-i', this.imagePath, `::${fileName}`, '-'], {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  }

  private async mountWithFuse(): Promise<void> {
    const fusefat = await findHostTool('fusefat', TOOLS, SEARCH_PATH).catch((error: Error) => {
      throw new Error(
        `This kernel has no vfat filesystem, so the FAT image cannot be loop-mounted, and ${error.message}`,
      );
    });
    // In the foreground, so its exit tells when the image is written back after unmounting.
    const child = spawn(fusefat, ['-f', '-o', 'rw+', this.imagePath, this.mountPoint], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.fuse = child;
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    this.fuseExit = new Promise((resolve) => child.once('exit', () => resolve()));
    await this.untilMounted(() => stderr);
  }

  /** fusefat says nothing when its mount is up: the mount table does. */
  private async untilMounted(stderr: () => string): Promise<void> {
    for (;;) {
      const mounts = parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
      if (mounts.some((mount) => mount.mountPoint === this.mountPoint)) return;
      if (this.fuse && (this.fuse.exitCode !== null || this.fuse.signalCode !== null)) {
        throw new Error(`fusefat exited before mounting ${this.imagePath}: ${stderr().trim()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

function tool(name: keyof typeof TOOLS): Promise<string> {
  return findHostTool(name, TOOLS, SEARCH_PATH);
}
