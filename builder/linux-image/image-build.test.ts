import { mkdtemp, open, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardfleetError } from '../../protocol/errors.ts';
import { PARTITION, type SlotDevices, slotOfBootConfig } from '../../protocol/linux-ab-layout.ts';
import type { BuildReporter } from '../build-runner.ts';
import { defaultCacheDir } from '../steps/cached-step.ts';
import { MBR_PARTITION_TYPE } from '../disk/disk-image.ts';
import { sha256File } from '../../lib/hash.ts';
import { ImageTools } from '../disk/image-tools.repository.ts';
import {
  listExt4,
  listFatFiles,
  listSquashfs,
  readFatFile,
  readPartitionTable,
} from '../disk/inspect-disk.ts';
import { buildImageWithDetails, type ImageBuildResult } from './image-build.ts';
import { loadRecipeOfKind } from '../recipe/recipe.ts';

/**
 * Whole image builds against Debian's archive and the real filesystem tools. Downloads go to the
 * per-user cache that every build shares (a warm run fetches nothing); the steps go to a fresh
 * directory per build, so every run really assembles and makes the filesystems and the disk.
 */
const CACHE_DIR = defaultCacheDir();
const EPOCH = 1_700_000_000;
const MIB = 1024 * 1024;
/** pi-minimal without the agent and Node (99 MB) and with small partitions: quick to build per board. */
const SMALL_RECIPE = fileURLToPath(new URL('../fixtures/pi-no-agent.yaml', import.meta.url));
const PI_MINIMAL = fileURLToPath(new URL('../../firmware-recipes/pi-minimal.yaml', import.meta.url));
/** A build with cold downloads fetches about 450 MB; warm, the small recipe takes 15 s, pi-minimal 35 s. */
const BUILD_TIMEOUT = 600_000;

/** What each Pi needs on its boot FAT, written out here rather than read from the board files. */
const PI_BOARDS = [
  {
    board: 'rpi-3b',
    firmware: ['bootcode.bin', 'fixup.dat', 'start.elf'],
    deviceTree: 'bcm2837-rpi-3-b.dtb',
    compatible: 'raspberrypi,3-model-b',
  },
  {
    board: 'rpi-4b',
    firmware: ['fixup4.dat', 'start4.elf'],
    deviceTree: 'bcm2711-rpi-4-b.dtb',
    compatible: 'raspberrypi,4-model-b',
  },
  {
    board: 'rpi-zero-2w',
    firmware: ['bootcode.bin', 'fixup.dat', 'start.elf'],
    deviceTree: 'bcm2837-rpi-zero-2-w.dtb',
    compatible: 'raspberrypi,model-zero-2-w',
  },
];

/** The SD card's partitions, as every Pi's kernel names them. */
const SD_CARD: SlotDevices = {
  boot: '/dev/mmcblk0p1',
  a: '/dev/mmcblk0p2',
  b: '/dev/mmcblk0p3',
  data: '/dev/mmcblk0p4',
};

interface Build extends ImageBuildResult {
  log: string[];
}

async function build(recipeFile: string, board: string, stepsDir: string): Promise<Build> {
  const log: string[] = [];
  const reporter: BuildReporter = {
    signal: new AbortController().signal,
    log: (line) => log.push(line),
    progress: () => undefined,
  };
  const result = await buildImageWithDetails(
    { recipeFile, board, cacheDir: CACHE_DIR, stepsDir, sourceDateEpoch: EPOCH },
    reporter,
  );
  return { ...result, log };
}

const scratch = (name: string) => mkdtemp(join(tmpdir(), `boardfleet-image-build-${name}-`));

async function readBytes(file: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function isAllZeros(file: string, offset: number, length: number): Promise<boolean> {
  const handle = await open(file, 'r');
  try {
    const chunk = Buffer.alloc(MIB);
    for (let done = 0; done < length; done += MIB) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(MIB, length - done), offset + done);
      if (bytesRead === 0 || chunk.subarray(0, bytesRead).some((byte) => byte !== 0)) return false;
    }
    return true;
  } finally {
    await handle.close();
  }
}

/** Files from the squashfs of a root slot, by unsquashfs into a scratch directory (no mount). */
async function readFromRootSlot(image: string, paths: string[]): Promise<Map<string, Buffer>> {
  const table = await readPartitionTable(image);
  const slot = table.partitions.find((partition) => partition.number === PARTITION.rootA)!;
  const directory = await scratch('root-files');
  try {
    const target = join(directory, 'root');
    await new ImageTools().run('unsquashfs', [
      '-q',
      '-n',
      '-no-xattrs',
      '-d',
      target,
      '-o',
      String(slot.startBytes),
      image,
      ...paths,
    ]);
    const files = new Map<string, Buffer>();
    for (const path of paths) files.set(path, await readFile(join(target, path)));
    return files;
  } finally {
    await rm(directory, { recursive: true, force: true });
  }
}

/** `packages: busybox-static=1:1.35.0-4 …` from the build log, as name → version. */
function packagesFromLog(log: string[]): Map<string, string> {
  const line = log.find((candidate) => candidate.startsWith('packages: '));
  expect(line, `no "packages:" line in the build log:\n${log.join('\n')}`).toBeDefined();
  return new Map(
    line!
      .slice('packages: '.length)
      .split(' ')
      .map((entry) => {
        const equals = entry.indexOf('=');
        return [entry.slice(0, equals), entry.slice(equals + 1)] as const;
      }),
  );
}

/** The kernel release in an arm64 Image's banner, and the Debian version it was built as. */
function kernelBanner(kernel: Buffer): { release: string; debianVersion: string } {
  const match = /Linux version (\S+) \(.*? SMP Debian (\S+) /.exec(kernel.toString('latin1'));
  expect(match, 'no "Linux version" banner in vmlinuz').not.toBeNull();
  return { release: match![1]!, debianVersion: match![2]! };
}

/** `1:1.35.0-4+deb12u1` → `1.35.0`: no epoch, no Debian revision. */
const upstreamVersion = (version: string) => version.replace(/^\d+:/, '').replace(/-[^-]*$/, '');

interface SpdxPackage {
  name: string;
  versionInfo: string;
  checksums?: Array<{ algorithm: string; checksumValue: string }>;
  externalRefs: Array<{ referenceType: string; referenceLocator: string }>;
}

describe.each(PI_BOARDS)('an image for $board, inspected without mounting', (expected) => {
  const sizes = loadRecipeOfKind(SMALL_RECIPE, 'linux-image').partitions;
  let steps: string | undefined;
  let built: Build;

  beforeAll(async () => {
    steps = await scratch(expected.board);
    built = await build(SMALL_RECIPE, expected.board, steps);
  }, BUILD_TIMEOUT);

  afterAll(async () => {
    if (steps) await rm(steps, { recursive: true, force: true });
  });

  it('has four partitions on 1 MiB boundaries: the boot FAT, then three Linux ones, sized by the recipe', async () => {
    const { partitions } = await readPartitionTable(built.diskImage);
    expect(partitions.map((partition) => partition.number)).toEqual([
      PARTITION.boot,
      PARTITION.rootA,
      PARTITION.rootB,
      PARTITION.data,
    ]);
    const boot = partitions[0]!;
    // The MBR type must say the FAT the boot sector says; the Pi's boot ROM reads either.
    const fat32 = (await readBytes(built.diskImage, boot.startBytes + 82, 8)).toString('latin1');
    const fat16 = (await readBytes(built.diskImage, boot.startBytes + 54, 8)).toString('latin1');
    const fatType =
      fat32 === 'FAT32   ' ? MBR_PARTITION_TYPE.fat32 : fat16 === 'FAT16   ' ? MBR_PARTITION_TYPE.fat16 : 0;
    expect(partitions.map((partition) => partition.type)).toEqual([
      fatType,
      MBR_PARTITION_TYPE.linux,
      MBR_PARTITION_TYPE.linux,
      MBR_PARTITION_TYPE.linux,
    ]);
    expect(partitions.map((partition) => partition.sizeBytes)).toEqual(
      [sizes.boot, sizes.root, sizes.root, sizes.data].map((mib) => mib * MIB),
    );
    expect(boot.startBytes).toBe(MIB);
    for (const [index, partition] of partitions.entries()) {
      expect(partition.startBytes % MIB, `partition ${partition.number} start`).toBe(0);
      const previous = partitions[index - 1];
      if (previous)
        expect(partition.startBytes).toBeGreaterThanOrEqual(previous.startBytes + previous.sizeBytes);
    }
    const last = partitions.at(-1)!;
    expect((await stat(built.diskImage)).size).toBeGreaterThanOrEqual(last.startBytes + last.sizeBytes);
  });

  it('carries a disk id that sfdisk reads too, as the prefix of every PARTUUID', async () => {
    const table = await readPartitionTable(built.diskImage);
    const { stdout } = await new ImageTools().run('sfdisk', ['--json', built.diskImage]);
    const sfdisk = (
      JSON.parse(stdout) as {
        partitiontable: { label: string; id: string; partitions: Array<{ start: number; type: string }> };
      }
    ).partitiontable;
    expect(sfdisk.label).toBe('dos');
    expect(table.diskId).not.toBe(0);
    expect(Number.parseInt(sfdisk.id, 16)).toBe(table.diskId);
    const prefix = sfdisk.id.replace(/^0x/, '').padStart(8, '0');
    expect(table.partitions.map((partition) => partition.partuuid)).toEqual(
      ['01', '02', '03', '04'].map((number) => `${prefix}-${number}`),
    );
    expect(sfdisk.partitions.map((partition) => partition.start * 512)).toEqual(
      table.partitions.map((partition) => partition.startBytes),
    );
  });

  it("holds exactly this board's firmware, config.txt, tryboot.txt, boardfleet.json and slot A on the boot FAT", async () => {
    const entries = await listFatFiles(built.diskImage, PARTITION.boot);
    const files = [
      ...expected.firmware,
      'boardfleet.json',
      'config.txt',
      'tryboot.txt',
      `slot-a/${expected.deviceTree}`,
      'slot-a/cmdline.txt',
      'slot-a/initrd.img',
      'slot-a/vmlinuz',
    ];
    expect(entries).toEqual(
      [
        ...files.map((file) => ({ path: `/${file}`, type: 'file' })),
        { path: '/slot-a', type: 'directory' },
      ].sort((a, b) => (a.path < b.path ? -1 : 1)),
    );
    for (const file of expected.firmware) {
      const content = await readFatFile(built.diskImage, PARTITION.boot, `/${file}`);
      expect(content.length, file).toBeGreaterThan(1024);
      if (file.endsWith('.elf')) expect(content.subarray(0, 4).toString('latin1'), file).toBe('\x7fELF');
    }
  });

  it("boots slot A in 64-bit mode with the board's device tree, from config.txt and tryboot.txt alike", async () => {
    const config = (await readFatFile(built.diskImage, PARTITION.boot, '/config.txt')).toString('utf8');
    const tryboot = (await readFatFile(built.diskImage, PARTITION.boot, '/tryboot.txt')).toString('utf8');
    for (const text of [config, tryboot]) {
      const lines = text.split('\n');
      expect(lines).toContain('arm_64bit=1');
      expect(lines).toContain(`device_tree=${expected.deviceTree}`);
      expect(lines).toContain('os_prefix=slot-a/');
      expect(lines).toContain('kernel=vmlinuz');
      expect(lines).toContain('initramfs initrd.img followkernel');
      expect(slotOfBootConfig(text)).toBe('a');
    }
  });

  it("gives slot A an arm64 kernel, an initramfs with that kernel's modules, the board's device tree and a command line for mmcblk0p2", async () => {
    const read = (file: string) => readFatFile(built.diskImage, PARTITION.boot, `/slot-a/${file}`);
    const kernel = await read('vmlinuz');
    // The arm64 Image header: the firmware loads it as it is.
    expect(kernel.subarray(56, 60).toString('latin1')).toBe('ARM\x64');
    const { release } = kernelBanner(kernel);
    const initramfs = gunzipSync(await read('initrd.img'));
    expect(initramfs.subarray(0, 6).toString('latin1')).toBe('070701');
    expect(initramfs.includes(`lib/modules/${release}/`)).toBe(true);
    // Its times are fixed (1980-01-01), not the build's epoch: a new SOURCE_DATE_EPOCH leaves it as it was.
    expect(Number.parseInt(initramfs.toString('latin1', 46, 54), 16)).toBe(315_532_800);

    const deviceTree = await read(expected.deviceTree);
    expect(deviceTree.readUInt32BE(0)).toBe(0xd00dfeed);
    expect(deviceTree.includes(`${expected.compatible}\0`)).toBe(true);

    const cmdline = (await read('cmdline.txt')).toString('utf8');
    // The firmware passes the first line only.
    expect(cmdline.trimEnd()).not.toContain('\n');
    const parameters = cmdline.trim().split(/\s+/);
    expect(parameters).toEqual(
      expect.arrayContaining([
        `root=${SD_CARD.a}`,
        `boardfleet.root=${SD_CARD.a}`,
        'boardfleet.slot=a',
        'console=ttyS1,115200',
        'ro',
      ]),
    );
  });

  it('makes slot A a squashfs root, all owned by root, with the init, busybox and the SD card partitions in slots.json', async () => {
    const table = await readPartitionTable(built.diskImage);
    const slotA = table.partitions.find((partition) => partition.number === PARTITION.rootA)!;
    expect((await readBytes(built.diskImage, slotA.startBytes, 4)).toString('latin1')).toBe('hsqs');
    const entries = await listSquashfs(built.diskImage, PARTITION.rootA);
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    expect(entries.filter((entry) => entry.uid !== 0 || entry.gid !== 0)).toEqual([]);
    expect(byPath.get('/sbin/init')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(byPath.get('/bin/busybox')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(byPath.get('/etc/boardfleet/slots.json')).toMatchObject({ type: 'file', mode: 0o644 });
    // The small recipe leaves the agent out, and with it the Node runtime.
    expect(byPath.has('/usr/bin/node')).toBe(false);
    expect(byPath.has('/opt/boardfleet/agent.mjs')).toBe(false);

    const files = await readFromRootSlot(built.diskImage, [
      '/etc/boardfleet/slots.json',
      '/etc/boardfleet/image.json',
    ]);
    expect(JSON.parse(files.get('/etc/boardfleet/slots.json')!.toString('utf8'))).toEqual(SD_CARD);
    expect(JSON.parse(files.get('/etc/boardfleet/image.json')!.toString('utf8'))).toMatchObject({
      board: expected.board,
    });
  });

  it('leaves slot B empty for the first update and makes the data partition an empty ext4', async () => {
    const table = await readPartitionTable(built.diskImage);
    const slotB = table.partitions.find((partition) => partition.number === PARTITION.rootB)!;
    expect(await isAllZeros(built.diskImage, slotB.startBytes, slotB.sizeBytes)).toBe(true);

    const data = table.partitions.find((partition) => partition.number === PARTITION.data)!;
    const superblock = await readBytes(built.diskImage, data.startBytes + 1024, 1024);
    expect(superblock.readUInt16LE(0x38)).toBe(0xef53);
    // Extents are what make it ext4 rather than ext2 or ext3.
    const INCOMPAT_EXTENTS = 0x40;
    expect(superblock.readUInt32LE(0x60) & INCOMPAT_EXTENTS).toBe(INCOMPAT_EXTENTS);
    const entries = await listExt4(built.diskImage, PARTITION.data);
    expect(entries.map((entry) => entry.path)).toEqual(['/', '/lost+found']);
    expect(entries[0]).toMatchObject({ uid: 0, gid: 0 });
  });
});

describe('pi-minimal for rpi-4b: the agent image', () => {
  const steps: string[] = [];
  let first: Build;

  beforeAll(async () => {
    steps.push(await scratch('pi-minimal'));
    first = await build(PI_MINIMAL, 'rpi-4b', steps[0]!);
  }, BUILD_TIMEOUT);

  afterAll(async () => {
    for (const directory of steps) await rm(directory, { recursive: true, force: true });
  });

  it('puts the init, the Node runtime, the agent bundle and slots.json into the root slot, owned by root', async () => {
    const entries = await listSquashfs(first.diskImage, PARTITION.rootA);
    const byPath = new Map(entries.map((entry) => [entry.path, entry]));
    expect(entries.filter((entry) => entry.uid !== 0 || entry.gid !== 0)).toEqual([]);
    expect(byPath.get('/sbin/init')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(byPath.get('/usr/bin/node')).toMatchObject({ type: 'file', mode: 0o755 });
    expect(byPath.get('/usr/bin/node')!.size).toBeGreaterThan(50 * MIB);
    expect(byPath.get('/opt/boardfleet/agent.mjs')).toMatchObject({ type: 'file', mode: 0o644 });
    expect(byPath.get('/opt/boardfleet/agent.mjs')!.size).toBeGreaterThan(100_000);
    expect(byPath.get('/etc/boardfleet/slots.json')).toMatchObject({ type: 'file' });
    // Node's dynamic loader: without it /usr/bin/node cannot start.
    expect([...byPath.keys()].some((path) => path.endsWith('/ld-linux-aarch64.so.1'))).toBe(true);
  });

  it('lists in its SBOM the kernel and busybox-static at the versions resolved from the index and built in', async () => {
    const resolved = packagesFromLog(first.log);
    const sbom = JSON.parse(await readFile(first.sbom, 'utf8')) as {
      spdxVersion: string;
      packages: SpdxPackage[];
    };
    expect(sbom.spdxVersion).toBe('SPDX-2.3');
    const kernels = sbom.packages.filter((pkg) => /^linux-image-6\.1\.0-\d+-arm64$/.test(pkg.name));
    expect(kernels).toHaveLength(1);
    const kernel = kernels[0]!;
    const busybox = sbom.packages.find((pkg) => pkg.name === 'busybox-static');
    expect(busybox).toBeDefined();
    for (const pkg of [kernel, busybox!]) {
      expect(pkg.versionInfo, pkg.name).toBe(resolved.get(pkg.name));
      expect(pkg.checksums?.[0]?.checksumValue, pkg.name).toMatch(/^[0-9a-f]{64}$/);
      expect(pkg.externalRefs[0]?.referenceLocator).toBe(
        `pkg:deb/debian/${pkg.name}@${encodeURIComponent(pkg.versionInfo)}?arch=arm64`,
      );
    }

    // The versions in the image itself: the kernel's banner and busybox's.
    const vmlinuz = await readFatFile(first.diskImage, PARTITION.boot, '/slot-a/vmlinuz');
    const banner = kernelBanner(vmlinuz);
    expect(`linux-image-${banner.release}`).toBe(kernel.name);
    expect(banner.debianVersion).toBe(kernel.versionInfo);
    const root = await readFromRootSlot(first.diskImage, ['/bin/busybox']);
    expect(root.get('/bin/busybox')!.toString('latin1')).toContain(
      `BusyBox v${upstreamVersion(busybox!.versionInfo)} (Debian ${busybox!.versionInfo})`,
    );
  });

  it(
    'builds the same disk image, update payload and SBOM, byte for byte, again from an empty steps directory',
    async () => {
      steps.push(await scratch('pi-minimal-again'));
      const second = await build(PI_MINIMAL, 'rpi-4b', steps[1]!);
      // Nothing was reused: the second build made every step itself.
      expect(second.reusedSteps).toEqual([]);
      expect(second.diskImage).not.toBe(first.diskImage);
      expect(second.inputsHash).toBe(first.inputsHash);
      for (const output of ['diskImage', 'diskImageCompressed', 'updatePayload', 'sbom'] as const) {
        expect(await sha256File(second[output]), output).toBe(await sha256File(first[output]));
      }
    },
    BUILD_TIMEOUT,
  );
});

describe('a build on a host without a filesystem tool', () => {
  let fakeBin: string | undefined;
  let steps: string | undefined;

  afterAll(async () => {
    for (const directory of [fakeBin, steps])
      if (directory) await rm(directory, { recursive: true, force: true });
  });

  // buildImageWithDetails takes no tool runner; its tools look the programs up on PATH when
  // they run. So the host is imitated: a PATH holding every program of /usr/bin but
  // squashfs-tools' (the disk layer adds the sbin directories, where Debian puts none of them).
  it(
    'stops with an error naming the missing tool and the Debian package to install, leaving no step behind',
    async () => {
      fakeBin = await scratch('path-without-squashfs-tools');
      const hidden = new Set(['mksquashfs', 'unsquashfs', 'sqfscat', 'sqfstar']);
      for (const program of await readdir('/usr/bin')) {
        if (!hidden.has(program)) await symlink(join('/usr/bin', program), join(fakeBin, program));
      }
      steps = await scratch('no-mksquashfs');
      const path = process.env.PATH;
      process.env.PATH = fakeBin;
      let failure: unknown;
      try {
        await build(SMALL_RECIPE, 'rpi-3b', steps);
      } catch (error) {
        failure = error;
      } finally {
        process.env.PATH = path;
      }
      expect(failure).toBeInstanceOf(BoardfleetError);
      expect(failure).toMatchObject({ code: 'tool-missing' });
      expect((failure as Error).message).toMatch(/^mksquashfs is not installed/);
      expect((failure as Error).message).toContain('apt-get install squashfs-tools');
      expect(await readdir(steps)).toEqual([]);
    },
    BUILD_TIMEOUT,
  );
});
