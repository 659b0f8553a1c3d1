import { chmod, copyFile, mkdir, mkdtemp, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import { DebianArchive } from '../../builder/debian/debian-archive.repository.ts';
import { moduleClosure } from '../../builder/debian/kernel-modules.ts';
import { writeCpioNewc } from '../../builder/disk/cpio-newc.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../../protocol/unikernel-image.ts';

/**
 * A FIXTURE unikernel bundle for the VM tests, made here rather than by the image builder: the
 * Debian cloud kernel and an initramfs whose /init is a busybox shell script that loads the
 * virtio network drivers, serves `hello <version>` with busybox httpd on guest port 8080 and
 * prints `fixture-http <version> listening on 8080`. Like a real image it turns ctrl-alt-del
 * into SIGINT for PID 1 and answers it by powering off. `behaviour: 'crash'` prints a line and
 * exits PID 1 at once (the kernel panics, and with panic=-1 reboots, which ends qemu);
 * `'never-ready'` boots but serves nothing.
 */
export interface FixtureBundle {
  dir: string;
  tarFile: string;
  spec: LaunchSpec;
}

const KERNEL_PACKAGE = 'linux-image-cloud-amd64';
const FIXTURE_EPOCH = 1_700_000_000;

let packages: Promise<{ kernelRoot: string; busybox: string }> | null = null;

/** Fixture folders made by this process (each ~30 MB, most of it the kernel twice). */
const fixtureDirs: string[] = [];

/** Removes every fixture bundle this process built: call it in afterAll. */
export function removeFixtureBundles(): void {
  for (const dir of fixtureDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** The kernel and busybox-static from Debian (cached in ~/.cache/boardfleet). */
function fixturePackages(): Promise<{ kernelRoot: string; busybox: string }> {
  packages ??= (async () => {
    const archive = new DebianArchive({
      architecture: 'amd64',
      components: ['main'],
      cacheDir: join(homedir(), '.cache', 'boardfleet', 'debian'),
      maxIndexAgeSeconds: 7 * 24 * 3600,
    });
    await archive.loadIndex();
    const closure = archive.resolve([KERNEL_PACKAGE, 'busybox-static'], {
      exclude: ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool'],
    });
    const kernel = closure.find((pkg) => /^linux-image-\d/.test(pkg.name));
    const busybox = closure.find((pkg) => pkg.name === 'busybox-static');
    if (!kernel || !busybox) throw new Error(`${KERNEL_PACKAGE} or busybox-static missing from the archive`);
    const [{ root: kernelRoot }, { root: busyboxRoot }] = [
      await archive.unpack(kernel),
      await archive.unpack(busybox),
    ];
    return { kernelRoot, busybox: join(busyboxRoot, 'bin', 'busybox') };
  })();
  return packages;
}

function initScript(version: string, behaviour: 'serve' | 'crash' | 'never-ready', network: boolean): string {
  const head = [
    '#!/bin/sh',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev',
  ];
  if (behaviour === 'crash') {
    return [...head, `echo "fixture-http ${version} is crashing on purpose"`, 'exit 3', ''].join('\n');
  }
  return [
    ...head,
    // The kernel then sends SIGINT to PID 1 on ctrl-alt-del instead of rebooting at once.
    'echo 0 > /proc/sys/kernel/ctrl-alt-del',
    'trap \'echo "fixture-http stopping"; sync; poweroff -f\' INT',
    'ip link set lo up',
    ...(network
      ? [
          'for module in $(cat /modules.load); do insmod "/lib/modules/$module"; done',
          'ip link set eth0 up',
          'ip addr add 10.0.2.15/24 dev eth0',
          'ip route add default via 10.0.2.2',
        ]
      : []),
    ...(behaviour === 'serve'
      ? ['httpd -p 8080 -h /www', `echo "fixture-http ${version} listening on 8080"`]
      : [`echo "fixture-http ${version} started, serving nothing"`]),
    'while true; do sleep 1; done',
    '',
  ].join('\n');
}

/** Builds the fixture bundle folder and its tar in a new temporary folder. */
export async function buildFixtureBundle(
  options: {
    name?: string;
    version: string;
    behaviour?: 'serve' | 'crash' | 'never-ready';
    /** `none`: no network device; ready by its console line alone. */
    network?: 'static' | 'none';
    stop?: LaunchSpec['stop'];
  } = { version: '1.0.0' },
): Promise<FixtureBundle> {
  const name = options.name ?? 'fixture-http';
  const behaviour = options.behaviour ?? 'serve';
  const { kernelRoot, busybox } = await fixturePackages();
  const work = await mkdtemp(join(tmpdir(), 'bf-uk-fixture-'));
  fixtureDirs.push(work);
  const tree = join(work, 'initramfs');
  const dir = join(work, 'bundle');
  await mkdir(dir, { recursive: true });
  for (const path of ['bin', 'proc', 'sys', 'dev', 'www', 'lib/modules'])
    await mkdir(join(tree, path), { recursive: true });
  await copyFile(busybox, join(tree, 'bin', 'busybox'));
  await chmod(join(tree, 'bin', 'busybox'), 0o755);
  for (const applet of 'cat httpd insmod ip mount poweroff sh sleep sync'.split(' ')) {
    await symlink('busybox', join(tree, 'bin', applet));
  }
  const modulesRoot = join(kernelRoot, 'lib', 'modules', (await kernelVersion(kernelRoot)) as string);
  const modules = moduleClosure(modulesRoot, ['virtio_pci', 'virtio_net']);
  for (const file of modules.files) {
    await mkdir(dirname(join(tree, 'lib/modules', file)), { recursive: true });
    await copyFile(join(modulesRoot, file), join(tree, 'lib/modules', file));
  }
  await writeFile(join(tree, 'modules.load'), modules.files.join('\n') + '\n');
  await writeFile(join(tree, 'www', 'index.html'), `hello ${options.version}\n`);
  await writeFile(join(tree, 'init'), initScript(options.version, behaviour, options.network !== 'none'), {
    mode: 0o755,
  });
  const initramfs = await writeCpioNewc(tree, join(dir, BUNDLE_FILES.initramfs), {
    epoch: FIXTURE_EPOCH,
    charDevices: [{ path: 'dev/console', major: 5, minor: 1 }],
  });
  const kernelFile = join(dir, BUNDLE_FILES.kernel);
  await copyFile(join(kernelRoot, 'boot', `vmlinuz-${await kernelVersion(kernelRoot)}`), kernelFile);
  const cmdline = 'console=ttyS0 panic=-1 rdinit=/init quiet';
  const consoleLine = `^fixture-http ${options.version.replace(/\./g, '\\.')} listening on 8080$`;
  const spec: LaunchSpec = {
    schemaVersion: 1,
    name,
    version: options.version,
    architecture: 'x86_64',
    cmdline,
    memoryMiB: 128,
    cpus: 1,
    ...(options.network === 'none'
      ? { network: { mode: 'none' }, ports: [], readiness: { consoleLine } }
      : {
          network: { mode: 'static', address: '10.0.2.15/24', gateway: '10.0.2.2', dns: [] },
          ports: [{ guest: 8080, protocol: 'tcp' }],
          readiness: { http: { port: 8080, path: '/' }, consoleLine },
        }),
    stop: options.stop ?? 'ctrl-alt-del',
    sizes: { kernel: (await stat(kernelFile)).size, initramfs: initramfs.size },
  };
  await writeFile(join(dir, BUNDLE_FILES.launchSpec), `${JSON.stringify(spec, null, 2)}\n`);
  await writeFile(
    join(dir, BUNDLE_FILES.firecracker),
    `${JSON.stringify(
      {
        'boot-source': {
          kernel_image_path: BUNDLE_FILES.kernel,
          initrd_path: BUNDLE_FILES.initramfs,
          boot_args: cmdline,
        },
        'machine-config': { vcpu_count: spec.cpus, mem_size_mib: spec.memoryMiB },
      },
      null,
      2,
    )}\n`,
  );
  const tarFile = join(work, `${name}-${options.version}.tar`);
  await tar.c({ cwd: dir, file: tarFile, portable: true }, Object.values(BUNDLE_FILES));
  return { dir, tarFile, spec };
}

async function kernelVersion(kernelRoot: string): Promise<string> {
  const versions = await readdir(join(kernelRoot, 'lib', 'modules'));
  if (versions.length !== 1)
    throw new Error(`expected one kernel in ${kernelRoot}, found ${versions.join(', ')}`);
  return versions[0] as string;
}
