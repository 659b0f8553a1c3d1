import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DebianArchive } from './debian-archive.repository.ts';
import { kernelVersionOf, moduleClosure, moduleName, readModuleInfo } from './kernel-modules.ts';

const run = promisify(execFile);

/** A real ELF object whose .modinfo holds `fields`, made by the arm64 cross compiler. */
async function compileModule(path: string, fields: string[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const literal = fields.map((field) => `"${field}\\0"`).join(' ');
  const source = `${path}.c`;
  await writeFile(
    source,
    `__attribute__((section(".modinfo"), used)) static const char info[] = ${literal};\n`,
  );
  await run('aarch64-linux-gnu-gcc', ['-c', '-o', path, source]);
  await rm(source);
}

describe('moduleClosure on a made-up module tree', () => {
  let root: string;
  const modules: Record<string, string[]> = {
    'kernel/fs/ext4/ext4.ko': [
      'softdep=pre: crypto-crc32c',
      'alias=fs-ext4',
      'depends=jbd2,mbcache,crc16',
      'name=ext4',
    ],
    'kernel/fs/jbd2/jbd2.ko': ['depends=', 'name=jbd2'],
    'kernel/fs/mbcache.ko': ['depends=', 'name=mbcache'],
    'kernel/lib/crc16.ko': ['depends=', 'name=crc16'],
    'kernel/crypto/crc32c_generic.ko': [
      'alias=crypto-crc32c',
      'alias=crc32c',
      'depends=',
      'name=crc32c_generic',
    ],
    'kernel/drivers/block/virtio_blk.ko': ['alias=virtio:d00000002v*', 'depends=', 'name=virtio_blk'],
    'kernel/fs/fat/fat.ko': ['depends=', 'name=fat'],
    'kernel/fs/fat/vfat.ko': ['depends=fat', 'name=vfat'],
    'kernel/drivers/misc/loop-a.ko': ['depends=loop_b', 'name=loop_a'],
    'kernel/drivers/misc/loop-b.ko': ['depends=loop_a', 'name=loop_b'],
    'kernel/drivers/misc/orphan.ko': ['softdep=post: nowhere', 'depends=ghost', 'name=orphan'],
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'boardfleet-modules-'));
    await Promise.all(
      Object.entries(modules).map(([path, fields]) => compileModule(join(root, path), fields)),
    );
    await writeFile(join(root, 'modules.order'), `${Object.keys(modules).join('\n')}\n`);
    await writeFile(join(root, 'modules.builtin'), 'kernel/fs/squashfs/squashfs.ko\nkernel/mm/zswap.ko\n');
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads depends, soft dependencies and aliases from .modinfo', () => {
    expect(readModuleInfo(join(root, 'kernel/fs/ext4/ext4.ko'))).toEqual({
      depends: ['jbd2', 'mbcache', 'crc16'],
      pre: ['crypto-crc32c'],
      post: [],
      aliases: ['fs-ext4'],
    });
  });

  it('puts every module after what it needs, soft dependencies found through their alias', () => {
    const closure = moduleClosure(root, ['ext4', 'virtio-blk', 'vfat']);
    expect(closure.files).toEqual([
      'kernel/crypto/crc32c_generic.ko',
      'kernel/fs/jbd2/jbd2.ko',
      'kernel/fs/mbcache.ko',
      'kernel/lib/crc16.ko',
      'kernel/fs/ext4/ext4.ko',
      'kernel/drivers/block/virtio_blk.ko',
      'kernel/fs/fat/fat.ko',
      'kernel/fs/fat/vfat.ko',
    ]);
    expect(closure.builtin).toEqual([]);
    expect(closure.modulesDep.split('\n')).toContain(
      'kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko',
    );
    expect(closure.modulesDep.split('\n')).toContain('kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko');
  });

  it('reports built-in modules instead of failing on them', () => {
    expect(moduleClosure(root, ['squashfs', 'zswap', 'fat'])).toEqual({
      files: ['kernel/fs/fat/fat.ko'],
      builtin: ['squashfs', 'zswap'],
      modulesDep: 'kernel/fs/fat/fat.ko:\n',
    });
  });

  it('names an unknown module, and the chain that needed it', () => {
    expect(() => moduleClosure(root, ['ext5'])).toThrow(
      `the kernel module ext5 is neither a module in ${root} nor built in`,
    );
    expect(() => moduleClosure(root, ['virtio'])).toThrow(
      `the kernel module virtio is neither a module in ${root} nor built in (similar: virtio_blk)`,
    );
    expect(() => moduleClosure(root, ['orphan'])).toThrow(
      `the kernel module ghost, needed by orphan, is neither a module in ${root} nor built in`,
    );
  });

  it('refuses a dependency cycle', () => {
    expect(() => moduleClosure(root, ['loop-a'])).toThrow(
      'kernel modules depend on each other in a cycle: loop_a → loop_b → loop_a',
    );
  });

  it('normalises names and paths the way the kernel does', () => {
    expect(moduleName('virtio-blk')).toBe('virtio_blk');
    expect(moduleName('kernel/drivers/block/virtio_blk.ko.xz')).toBe('virtio_blk');
  });
});

describe('the real Debian bookworm arm64 kernel', () => {
  // Shared with debian-archive.repository.test.ts; the ~60 MB package is fetched and unpacked once.
  const archive = new DebianArchive({
    cacheDir: join(homedir(), '.cache', 'boardfleet', 'test-debian'),
    maxIndexAgeSeconds: 6 * 3600,
  });
  let root: string;
  let packageName: string;

  beforeAll(async () => {
    await archive.loadIndex();
    const kernel = archive
      .resolve(['linux-image-arm64'], { exclude: ['kmod', 'linux-base', 'initramfs-tools'] })
      .find((pkg) => pkg.name !== 'linux-image-arm64');
    if (!kernel) throw new Error('linux-image-arm64 depends on no kernel package');
    packageName = kernel.name;
    root = (await archive.unpack(kernel)).root;
  }, 600_000);

  it('finds the kernel, its modules and the Raspberry Pi device trees', () => {
    const layout = kernelVersionOf(root);
    expect(`linux-image-${layout.version}`).toBe(packageName);
    expect(layout).toEqual({
      version: layout.version,
      kernel: `boot/vmlinuz-${layout.version}`,
      kernelCompression: 'none',
      modulesDir: `lib/modules/${layout.version}`,
      dtbDir: `usr/lib/linux-image-${layout.version}`,
    });
    for (const dtb of ['bcm2711-rpi-4-b.dtb', 'bcm2837-rpi-3-b.dtb', 'bcm2837-rpi-zero-2-w.dtb']) {
      expect(existsSync(join(root, layout.dtbDir as string, 'broadcom', dtb))).toBe(true);
    }
  });

  it('gives squashfs, virtio_blk, ext4 and vfat with their dependencies first', () => {
    const modulesRoot = join(root, kernelVersionOf(root).modulesDir);
    const closure = moduleClosure(modulesRoot, ['squashfs', 'virtio_blk', 'ext4', 'vfat']);
    expect(closure.files).toEqual([
      'kernel/fs/squashfs/squashfs.ko',
      'kernel/drivers/block/virtio_blk.ko',
      'kernel/crypto/crc32c_generic.ko',
      'kernel/fs/jbd2/jbd2.ko',
      'kernel/fs/mbcache.ko',
      'kernel/lib/crc16.ko',
      'kernel/fs/ext4/ext4.ko',
      'kernel/fs/fat/fat.ko',
      'kernel/fs/fat/vfat.ko',
    ]);
    expect(closure.files.every((file) => existsSync(join(modulesRoot, file)))).toBe(true);
    expect(closure.builtin).toEqual([]);
  });

  it('reports a module Debian builds into the kernel', () => {
    expect(moduleClosure(join(root, kernelVersionOf(root).modulesDir), ['zswap']).builtin).toEqual(['zswap']);
  });
});
