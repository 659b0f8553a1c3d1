import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { PackageTree } from '../library-resolver.ts';
import { INITRAMFS_APPLETS, ROOTFS_APPLETS } from '../busybox.ts';
import { fakeBusybox, fakeElf } from './fake-elf.ts';

const LD = 'ld-linux-aarch64.so.1';
const NODE_NEEDED = [
  'libdl.so.2',
  'libstdc++.so.6',
  'libm.so.6',
  'libgcc_s.so.1',
  'libpthread.so.0',
  'libc.so.6',
  LD,
];

/** Everything the builder would have fetched and extracted, in miniature, shaped like Debian's. */
export interface FakeInputs {
  packageTrees: PackageTree[];
  nodeBinary: string;
  agentBundle: string;
  rebootHelper: string;
  busyboxStatic: string;
  /** lib/modules/6.1.0-99-arm64 of a fake kernel package, with a few modules. */
  modulesRoot: string;
  /** A fake raspi-firmware package root. */
  firmwareRoot: string;
  kernel: string;
  dtbs: Record<string, string>;
}

async function put(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content, { mode });
}

async function link(path: string, target: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await symlink(target, path);
}

/** Writes fake extracted packages, a fake Node, agent, reboot helper, kernel and firmware under `root`. */
export async function writeFakeInputs(root: string): Promise<FakeInputs> {
  const tree = (name: string) => join(root, 'packages', name);
  const library = (needed: string[]) => fakeElf({ needed });

  await put(
    join(tree('busybox-static'), 'bin/busybox'),
    fakeBusybox([...ROOTFS_APPLETS, ...INITRAMFS_APPLETS]),
    0o755,
  );
  await put(join(tree('busybox-static'), 'usr/share/doc/busybox-static/copyright'), 'GPL-2\n');

  const libc = join(tree('libc6'), 'lib/aarch64-linux-gnu');
  await put(join(libc, LD), library([]), 0o755);
  await link(join(tree('libc6'), 'lib', LD), `aarch64-linux-gnu/${LD}`);
  for (const name of ['libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1']) {
    await put(join(libc, name), library(name === 'libc.so.6' ? [LD] : ['libc.so.6', LD]));
  }
  await put(join(tree('libc6'), 'usr/share/doc/libc6/copyright'), 'LGPL\n');

  const cxx = join(tree('libstdc++6'), 'usr/lib/aarch64-linux-gnu');
  await put(join(cxx, 'libstdc++.so.6.0.30'), library(['libm.so.6', 'libc.so.6', 'libgcc_s.so.1']));
  await link(join(cxx, 'libstdc++.so.6'), 'libstdc++.so.6.0.30');
  await put(join(tree('libgcc-s1'), 'lib/aarch64-linux-gnu/libgcc_s.so.1'), library(['libc.so.6']));

  await put(join(tree('ca-certificates'), 'usr/share/ca-certificates/mozilla/B_Root.crt'), 'BBB\n');
  await put(join(tree('ca-certificates'), 'usr/share/ca-certificates/mozilla/A_Root.crt'), 'AAA');

  // A recipe package whose program needs a library from another package, and ships a blob that
  // is ELF for another processor (as firmware packages do).
  await put(
    join(tree('i2c-tools'), 'usr/sbin/i2cdetect'),
    fakeElf({ type: 3, interpreter: `/lib/${LD}`, needed: ['libi2c.so.0', 'libc.so.6'] }),
    0o755,
  );
  await put(join(tree('i2c-tools'), 'usr/lib/firmware/coprocessor.elf'), fakeElf({ machine: 40 }));
  await put(join(tree('i2c-tools'), 'usr/share/doc/i2c-tools/README'), 'docs\n');
  await put(join(tree('i2c-tools'), 'usr/share/man/man8/i2cdetect.8.gz'), 'man\n');
  await put(join(tree('libi2c0'), 'usr/lib/aarch64-linux-gnu/libi2c.so.0.1.1'), library(['libc.so.6']));
  await link(join(tree('libi2c0'), 'usr/lib/aarch64-linux-gnu/libi2c.so.0'), 'libi2c.so.0.1.1');

  const nodeBinary = join(root, 'node/bin/node');
  await put(nodeBinary, fakeElf({ type: 2, interpreter: `/lib/${LD}`, needed: NODE_NEEDED }), 0o755);
  const agentBundle = join(root, 'agent/agent.mjs');
  await put(agentBundle, "console.log('agent');\n");
  const rebootHelper = join(root, 'reboot/boardfleet-reboot');
  await put(rebootHelper, fakeElf({ type: 2 }), 0o755);

  const modulesRoot = join(root, 'packages/linux-image-6.1.0-99-arm64/lib/modules/6.1.0-99-arm64');
  for (const path of ['kernel/fs/squashfs/squashfs.ko', 'kernel/fs/ext4/ext4.ko', 'kernel/fs/jbd2/jbd2.ko']) {
    await put(join(modulesRoot, path), fakeElf({ type: 1 }));
  }
  const kernelRoot = join(root, 'packages/linux-image-6.1.0-99-arm64');
  const kernel = join(kernelRoot, 'boot/vmlinuz-6.1.0-99-arm64');
  await put(kernel, Buffer.from('ARM64 kernel image'));
  const dtbs: Record<string, string> = {};
  for (const name of ['bcm2837-rpi-3-b', 'bcm2837-rpi-zero-2-w', 'bcm2711-rpi-4-b']) {
    dtbs[name] = join(kernelRoot, `usr/lib/linux-image-6.1.0-99-arm64/broadcom/${name}.dtb`);
    await put(dtbs[name], Buffer.from([0xd0, 0x0d, 0xfe, 0xed, ...Buffer.from(name)]));
  }

  const firmwareRoot = join(root, 'packages/raspi-firmware');
  for (const name of [
    'bootcode.bin',
    'start.elf',
    'fixup.dat',
    'start4.elf',
    'fixup4.dat',
    'start_x.elf',
    'fixup4x.dat',
  ]) {
    await put(join(firmwareRoot, 'usr/lib/raspi-firmware', name), `firmware ${name}\n`);
  }

  const packageTrees = [
    'busybox-static',
    'ca-certificates',
    'i2c-tools',
    'libc6',
    'libgcc-s1',
    'libi2c0',
    'libstdc++6',
  ].map((name) => ({ name, root: tree(name) }));
  return {
    packageTrees,
    nodeBinary,
    agentBundle,
    rebootHelper,
    busyboxStatic: join(tree('busybox-static'), 'bin/busybox'),
    modulesRoot,
    firmwareRoot,
    kernel,
    dtbs,
  };
}
