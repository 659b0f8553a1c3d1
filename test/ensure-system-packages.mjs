#!/usr/bin/env node
// Runs before the test suite: the suite uses real tools (a PostgreSQL server, Mosquitto, the AVR
// toolchain, simavr, avrdude...). Missing Debian packages are installed when we are root (as CI
// is); otherwise we stop with the one apt-get line to run. A skipped test is not a pass.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Debian package → a file that proves it is installed. One place to add what the suite needs. */
export const REQUIRED_DEBIAN_PACKAGES = {
  postgresql: '/usr/lib/postgresql',
  mosquitto: '/usr/sbin/mosquitto',
  'gcc-avr': '/usr/bin/avr-gcc',
  'binutils-avr': '/usr/bin/avr-objcopy',
  'avr-libc': '/usr/lib/avr/include/avr/io.h',
  'arduino-core-avr': '/usr/share/arduino/hardware/arduino/avr/bootloaders',
  simavr: '/usr/bin/simavr',
  'libsimavr-dev': '/usr/include/simavr/sim_avr.h',
  'libelf-dev': '/usr/include/libelf.h',
  'pkg-config': '/usr/bin/pkg-config',
  gcc: '/usr/bin/gcc',
  avrdude: '/usr/bin/avrdude',
  // The Pico (RP2040) firmware: Arm's bare-metal GCC and newlib (firmware-recipes/firmata/src/rp2040/).
  'gcc-arm-none-eabi': '/usr/bin/arm-none-eabi-gcc',
  'libnewlib-arm-none-eabi': '/usr/lib/arm-none-eabi/newlib/nano.specs',
  socat: '/usr/bin/socat',
  udev: '/usr/bin/udevadm',
  // Linux images: filesystems made from folders, unprivileged; qemu boots what we build.
  'squashfs-tools': '/usr/bin/mksquashfs',
  dosfstools: '/usr/sbin/mkfs.vfat',
  mtools: '/usr/bin/mcopy',
  // A FAT image stands for the Pico's BOOTSEL drive (mcu/flasher/uf2-drive.test.ts); fusefat mounts it
  // where the kernel has no vfat to loop-mount it with.
  fusefat: '/usr/bin/fusefat',
  fdisk: '/usr/sbin/sfdisk',
  e2fsprogs: '/usr/sbin/mke2fs',
  cpio: '/usr/bin/cpio',
  busybox: '/bin/busybox',
  gpgv: '/usr/bin/gpgv',
  'debian-archive-keyring': '/usr/share/keyrings/debian-archive-keyring.gpg',
  'xz-utils': '/usr/bin/xz',
  zstd: '/usr/bin/zstd',
  'qemu-system-arm': '/usr/bin/qemu-system-aarch64',
  'qemu-system-x86': '/usr/bin/qemu-system-x86_64',
  // The agent's oci strategy runs containers with crun (device-agent/update/oci/).
  crun: '/usr/bin/crun',
  // Small static programs for the images (the reboot helper, unikernel applications).
  'gcc-aarch64-linux-gnu': '/usr/bin/aarch64-linux-gnu-gcc',
  'libc6-dev-arm64-cross': '/usr/aarch64-linux-gnu/lib/libc.a',
  // Specialised unikernel kernels, compiled from Debian's linux-source (kconfig and the build).
  flex: '/usr/bin/flex',
  bison: '/usr/bin/bison',
  bc: '/usr/bin/bc',
  make: '/usr/bin/make',
  // The dashboard's end-to-end test drives Debian's Chromium (playwright-core downloads no browser).
  chromium: '/usr/bin/chromium',
  // The delta benchmark's peer (`npm run bench -- delta`), measured on the same two versions.
  casync: '/usr/bin/casync',
  // The Arduino libraries benchmark's peer (`npm run bench -- arduino-libraries`), same sketches.
  'arduino-builder': '/usr/bin/arduino-builder',
};

function missingPackages() {
  return Object.entries(REQUIRED_DEBIAN_PACKAGES)
    .filter(([, proof]) => !existsSync(proof))
    .map(([name]) => name);
}

const missing = missingPackages();
if (missing.length > 0) {
  // Waits for another apt (unattended upgrades, a second checkout's test run) instead of failing.
  const installLine = `apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `The test suite needs Debian packages that are not installed. Run:\n  sudo ${installLine}\n`,
    );
    process.exit(1);
  }
  process.stdout.write(`Installing Debian packages the tests need: ${missing.join(' ')}\n`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  const result = spawnSync('apt-get', installLine.split(' ').slice(1), {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const stillMissing = missingPackages();
  if (result.status !== 0 || stillMissing.length > 0) {
    process.stderr.write(`Could not install: ${stillMissing.join(' ')}. Run as root:\n  ${installLine}\n`);
    process.exit(1);
  }
}
