// The benchmark's baseline: the same kernel booting a conventional minimal Linux that does the
// same job as the image: a busybox initramfs whose /init is a shell script (mount the
// pseudo-filesystems, insmod the image's own modules, udhcpc, start busybox httpd on the image's
// port, print a line, start a shell), made into a bundle the same qemu runner boots.
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DebianArchive } from '../builder/debian/debian-archive.repository.ts';
import { compressImage } from '../builder/disk/compress-image.ts';
import { writeCpioNewc } from '../builder/disk/cpio-newc.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../protocol/unikernel-image.ts';

export const BASELINE_READY_LINE = 'baseline shell ready';

const exec = promisify(execFile);
const DEBIAN_ARCHITECTURE = { x86_64: 'amd64', arm64: 'arm64' } as const;
const APPLETS = ['sh', 'mount', 'echo', 'cat', 'insmod', 'ip', 'udhcpc', 'httpd'];
const initScript = (port: number) => `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /etc/modules); do insmod "$module"; done
ip link set lo up
while [ ! -e /sys/class/net/eth0 ]; do :; done
ip link set eth0 up
udhcpc -i eth0 -q -n -s /etc/udhcpc.script
httpd -p ${port} -h /www
echo "${BASELINE_READY_LINE}"
exec sh
`;
const UDHCPC_SCRIPT = `#!/bin/sh
case "$1" in bound|renew)
  ip link set "$interface" up
  ip addr add "$ip/\${mask:-24}" dev "$interface"
  [ -n "$router" ] && ip route add default via "\${router%% *}"
esac
exit 0
`;

/**
 * Writes the baseline bundle into `bundleDir`: `kernel` and the kernel modules taken from the
 * image being measured (`imageDir`, an unpacked bundle), busybox-static from Debian's archive
 * (fetched once into `cacheDir`), the image's command line with its init replaced by the script.
 * It serves HTTP on the image's first port, so both are timed to the same kind of readiness.
 */
export async function makeBaselineBundle(options: {
  image: LaunchSpec;
  imageDir: string;
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
  const port = image.ports[0]?.guest ?? 8080;
  try {
    for (const directory of ['bin', 'proc', 'sys', 'dev', 'etc', 'www'])
      mkdirSync(join(tree, directory), { recursive: true });
    // The image's modules, in the order its pre-init loads them.
    await exec('sh', [
      '-c',
      `zstd -dc "${join(options.imageDir, BUNDLE_FILES.initramfs)}" | (cd "${tree}" && cpio -id --quiet 'lib/modules/*' etc/boardfleet/init.conf)`,
    ]);
    const modules = readFileSync(join(tree, 'etc/boardfleet/init.conf'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('module '))
      .map((line) => line.slice('module '.length));
    rmSync(join(tree, 'etc/boardfleet'), { recursive: true });
    writeFileSync(join(tree, 'etc/modules'), `${modules.join('\n')}\n`);
    writeFileSync(join(tree, 'etc/udhcpc.script'), UDHCPC_SCRIPT, { mode: 0o755 });
    writeFileSync(join(tree, 'www/index.html'), 'hello from the baseline\n');
    copyFileSync(join(root, 'bin', 'busybox'), join(tree, 'bin', 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(tree, 'bin', applet));
    writeFileSync(join(tree, 'init'), initScript(port), { mode: 0o755 });
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
  const kernel = join(options.imageDir, BUNDLE_FILES.kernel);
  copyFileSync(kernel, join(bundleDir, BUNDLE_FILES.kernel));

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
    network: { mode: 'dhcp' },
    ports: [{ guest: port, protocol: 'tcp' }],
    readiness: { http: { port, path: '/' }, consoleLine: `^${BASELINE_READY_LINE}$` },
    stop: 'kill',
    sizes: { kernel: statSync(kernel).size, initramfs: statSync(initramfs).size },
  };
  writeFileSync(join(bundleDir, BUNDLE_FILES.launchSpec), `${JSON.stringify(spec, null, 2)}\n`);
}
