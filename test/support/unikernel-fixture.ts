import { chmod, copyFile, mkdir, mkdtemp, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import { DebianArchive } from '../../builder/debian/debian-archive.repository.ts';
import { moduleClosure } from '../../builder/debian/kernel-modules.ts';
import { writeCpioNewc } from '../../builder/disk/cpio-newc.ts';
import { QemuVm } from '../../device-agent/vm/qemu-vm.ts';
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

const crashLine = (version: string) => `fixture-http ${version} is crashing on purpose`;

function initScript(version: string, behaviour: 'serve' | 'crash' | 'never-ready', network: boolean): string {
  const head = [
    '#!/bin/sh',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev',
  ];
  if (behaviour === 'crash') {
    return [...head, `echo "${crashLine(version)}"`, 'exit 3', ''].join('\n');
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

/** A TCG boot slower than this is a broken machine, not a loaded one. */
const BOOT_TIMING_CEILING_MS = 600_000;

/**
 * Times one TCG boot of a fixture whose init exits at once (the kernel panics and reboots, which
 * ends qemu): how fast this machine boots a VM right now, loaded or not. VM tests take their waits
 * as multiples of it (see {@link tcgWaits}) instead of fixed seconds.
 */
export async function timeTcgBoot(): Promise<number> {
  const version = '0.0.0';
  const bundle = await buildFixtureBundle({ version, behaviour: 'crash' });
  try {
    const vm = new QemuVm({
      bundleDir: bundle.dir,
      accelerator: { accel: 'tcg', reason: 'timing a TCG boot' },
    });
    const started = performance.now();
    await vm.start();
    const watchdog = setTimeout(() => vm.kill(), BOOT_TIMING_CEILING_MS);
    const exit = await vm.exited;
    clearTimeout(watchdog);
    const bootMs = performance.now() - started;
    // Only a boot that reached init measures the machine; a qemu that failed early would make every wait tiny.
    if (
      !exit.description.startsWith('the guest rebooted') ||
      !vm.console.tail().includes(crashLine(version))
    ) {
      throw new Error(
        `timing a TCG boot failed: ${exit.description}; last console lines:\n${vm.console.tail(20).join('\n')}`,
      );
    }
    return bootMs;
  } finally {
    rmSync(dirname(bundle.dir), { recursive: true, force: true });
  }
}

/** How long VM tests wait, for a machine that boots the timing fixture in `bootMs`. */
export interface TcgWaits {
  /** For a fixture to get ready by HTTP and console line (it takes about 1.5 boots). */
  readyMs: number;
  /** For a guest to power off after ctrl-alt-del. */
  stopMs: number;
  /** For a whole test that starts one VM, waits for it to get ready and stops it. */
  testMs: number;
}

/** Multiples of one boot (getting ready takes about 1.5): room for the machine to slow down after the timing. */
const READY_BOOTS = 30;
const STOP_BOOTS = 10;
/** Never less than these, which hold on an idle machine. */
const READY_FLOOR_MS = 120_000;
const STOP_FLOOR_MS = 60_000;
/** Starting qemu (its QMP socket may take up to 30 s), SIGTERM's grace, an HTTP request. */
const TEST_OVERHEAD_MS = 60_000;

/** The waits of VM tests on a machine that boots the timing fixture in `bootMs`. */
export function tcgWaits(bootMs: number): TcgWaits {
  const readyMs = Math.max(READY_FLOOR_MS, Math.ceil(READY_BOOTS * bootMs));
  const stopMs = Math.max(STOP_FLOOR_MS, Math.ceil(STOP_BOOTS * bootMs));
  return { readyMs, stopMs, testMs: readyMs + stopMs + TEST_OVERHEAD_MS };
}

async function kernelVersion(kernelRoot: string): Promise<string> {
  const versions = await readdir(join(kernelRoot, 'lib', 'modules'));
  if (versions.length !== 1)
    throw new Error(`expected one kernel in ${kernelRoot}, found ${versions.join(', ')}`);
  return versions[0] as string;
}
