// The benchmark's baseline: the same kernel booting a conventional minimal Linux, a busybox
// initramfs whose /init is a shell script (mount the pseudo-filesystems, print a line, start a
// shell), made into a bundle the same qemu runner boots.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DebianArchive } from '../server/builds/debian/debian-archive.repository.ts';
import { compressImage } from '../server/builds/disk/compress-image.ts';
import { writeCpioNewc } from '../server/builds/disk/cpio-newc.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../protocol/unikernel-image.ts';

export const BASELINE_READY_LINE = 'baseline shell ready';

const DEBIAN_ARCHITECTURE = { x86_64: 'amd64', arm64: 'arm64' } as const;
const APPLETS = ['sh', 'mount', 'echo'];
const INIT_SCRIPT = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "${BASELINE_READY_LINE}"
exec sh
`;

/**
 * Writes the baseline bundle into `bundleDir`: `kernel` copied from the image being measured,
 * busybox-static from Debian's archive (fetched once into `cacheDir`), the image's command line
 * with its init replaced by the script, no network.
 */
export async function makeBaselineBundle(options: {
  image: LaunchSpec;
  kernel: string;
  bundleDir: string;
  cacheDir: string;
  epoch: number;
}): Promise<void> {
  const { image, bundleDir } = options;
  const archive = new DebianArchive({
    architecture: DEBIAN_ARCHITECTURE[image.architecture],
    cacheDir: join(options.cacheDir, 'debian'),
    components: ['main'],
    // The index of the last hour is fine for a benchmark; the image build refreshed it anyway.
    maxIndexAgeSeconds: 3600,
  });
  await archive.loadIndex();
  const [busybox] = archive.resolve(['busybox-static']).filter((pkg) => pkg.name === 'busybox-static');
  if (!busybox) throw new Error("busybox-static is not in Debian's index");
  const { root } = await archive.unpack(busybox);

  const work = mkdtempSync(join(tmpdir(), 'baseline-initramfs-'));
  const tree = join(work, 'tree');
  const cpio = join(work, 'initramfs.cpio');
  const initramfs = join(bundleDir, BUNDLE_FILES.initramfs);
  try {
    for (const directory of ['bin', 'proc', 'sys', 'dev'])
      mkdirSync(join(tree, directory), { recursive: true });
    copyFileSync(join(root, 'bin', 'busybox'), join(tree, 'bin', 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(tree, 'bin', applet));
    writeFileSync(join(tree, 'init'), INIT_SCRIPT, { mode: 0o755 });
    await writeCpioNewc(tree, cpio, {
      epoch: options.epoch,
      compression: 'none',
      // The kernel opens /dev/console for init before anything could mount devtmpfs.
      charDevices: [{ path: 'dev/console', major: 5, minor: 1 }],
    });
    // zstd, as the image's own (and Debian's initramfs-tools) use: only the contents differ.
    await compressImage(cpio, initramfs, { format: 'zstd' });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  copyFileSync(options.kernel, join(bundleDir, BUNDLE_FILES.kernel));

  const cmdline = [
    ...image.cmdline.split(/\s+/).filter((word) => word && !/^(rd)?init=/.test(word)),
    'rdinit=/init',
  ].join(' ');
  const spec: LaunchSpec = {
    schemaVersion: 1,
    name: 'busybox-shell-baseline',
    version: '1.0.0',
    architecture: image.architecture,
    cmdline,
    memoryMiB: image.memoryMiB,
    cpus: image.cpus,
    network: { mode: 'none' },
    ports: [],
    readiness: { consoleLine: `^${BASELINE_READY_LINE}$` },
    stop: 'kill',
    sizes: { kernel: statSync(options.kernel).size, initramfs: statSync(initramfs).size },
  };
  writeFileSync(join(bundleDir, BUNDLE_FILES.launchSpec), `${JSON.stringify(spec, null, 2)}\n`);
}
