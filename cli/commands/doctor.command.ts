import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Command } from 'commander';
import { printJson, printTable } from '../output.ts';

/** What each feature runs, how to tell it is installed, and the Debian package that brings it. */
const REQUIREMENTS: Array<{
  feature: string;
  what: string;
  proof: { command: string } | { file: string };
  debianPackage: string;
}> = [
  { feature: 'build', what: 'avr-gcc', proof: { command: 'avr-gcc' }, debianPackage: 'gcc-avr' },
  {
    feature: 'build',
    what: 'avr-objcopy, avr-size',
    proof: { command: 'avr-objcopy' },
    debianPackage: 'binutils-avr',
  },
  {
    feature: 'build',
    what: 'avr-libc headers',
    proof: { file: '/usr/lib/avr/include/avr/io.h' },
    debianPackage: 'avr-libc',
  },
  {
    feature: 'build',
    what: 'Arduino core (sketches, bootloader sources)',
    proof: { file: '/usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h' },
    debianPackage: 'arduino-core-avr',
  },
  {
    feature: 'bench',
    what: 'gcc (builds the simulator harness)',
    proof: { command: 'gcc' },
    debianPackage: 'gcc',
  },
  { feature: 'bench', what: 'pkg-config', proof: { command: 'pkg-config' }, debianPackage: 'pkg-config' },
  {
    feature: 'bench',
    what: 'simavr library and headers',
    proof: { file: '/usr/include/simavr/sim_avr.h' },
    debianPackage: 'libsimavr-dev',
  },
  {
    feature: 'bench',
    what: 'libelf headers',
    proof: { file: '/usr/include/libelf.h' },
    debianPackage: 'libelf-dev',
  },
  {
    feature: 'ports',
    what: 'udevadm (lists USB serial ports)',
    proof: { command: 'udevadm' },
    debianPackage: 'udev',
  },
  {
    feature: 'compare',
    what: 'avrdude (optional: flash with the reference tool)',
    proof: { command: 'avrdude' },
    debianPackage: 'avrdude',
  },
  {
    feature: 'image',
    what: 'mksquashfs (root slots)',
    proof: { command: 'mksquashfs' },
    debianPackage: 'squashfs-tools',
  },
  {
    feature: 'image',
    what: 'unsquashfs (inspects root slots)',
    proof: { command: 'unsquashfs' },
    debianPackage: 'squashfs-tools',
  },
  {
    feature: 'image',
    what: 'mkfs.vfat (boot partition)',
    proof: { command: 'mkfs.vfat' },
    debianPackage: 'dosfstools',
  },
  {
    feature: 'image',
    what: 'mtools (fills the boot partition without mounting it)',
    proof: { command: 'mcopy' },
    debianPackage: 'mtools',
  },
  {
    feature: 'image',
    what: 'sfdisk (partition table)',
    proof: { command: 'sfdisk' },
    debianPackage: 'fdisk',
  },
  {
    feature: 'image',
    what: 'mke2fs, debugfs (data partition)',
    proof: { command: 'mke2fs' },
    debianPackage: 'e2fsprogs',
  },
  {
    feature: 'image',
    what: 'zstd (compressed disk image)',
    proof: { command: 'zstd' },
    debianPackage: 'zstd',
  },
  {
    feature: 'image',
    what: 'xz (disk image compressed as .xz, on request)',
    proof: { command: 'xz' },
    debianPackage: 'xz-utils',
  },
  {
    feature: 'image',
    what: 'gpgv (checks the Debian archive signature)',
    proof: { command: 'gpgv' },
    debianPackage: 'gpgv',
  },
  {
    feature: 'image',
    what: 'qemu-system-aarch64 (boots images in tests)',
    proof: { command: 'qemu-system-aarch64' },
    debianPackage: 'qemu-system-arm',
  },
  {
    feature: 'image',
    what: 'qemu-system-x86_64 (boots images in tests)',
    proof: { command: 'qemu-system-x86_64' },
    debianPackage: 'qemu-system-x86',
  },
  {
    feature: 'image',
    what: 'aarch64-linux-gnu-gcc (builds the image init, arm64 unikernels)',
    proof: { command: 'aarch64-linux-gnu-gcc' },
    debianPackage: 'gcc-aarch64-linux-gnu',
  },
  {
    feature: 'image',
    what: 'x86_64-linux-gnu-gcc (builds x86_64 unikernels)',
    proof: { command: 'x86_64-linux-gnu-gcc' },
    debianPackage: process.arch === 'x64' ? 'gcc' : 'gcc-x86-64-linux-gnu',
  },
];

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'Check the tools Boardfleet runs (firmware builds, Linux images, simulated boards, ports) and name the Debian packages to install',
    )
    .option('--json', 'machine-readable output')
    .action((options: { json?: boolean }) => {
      const checks = REQUIREMENTS.map((requirement) => ({
        feature: requirement.feature,
        what: requirement.what,
        debianPackage: requirement.debianPackage,
        installed:
          'command' in requirement.proof
            ? onPath(requirement.proof.command)
            : readable(requirement.proof.file),
      }));
      const missing = [
        ...new Set(checks.filter((check) => !check.installed).map((check) => check.debianPackage)),
      ];
      if (options.json) return printJson({ checks, missing });
      printTable(
        checks.map((check) => ({
          feature: check.feature,
          tool: check.what,
          status: check.installed ? 'ok' : `MISSING (${check.debianPackage})`,
        })),
        ['feature', 'tool', 'status'],
      );
      process.stdout.write(
        missing.length === 0
          ? '\nEverything is installed.\n'
          : `\nInstall what is missing with:\n  sudo apt-get install ${missing.join(' ')}\n`,
      );
      if (missing.length > 0) process.exitCode = 1;
    });
}

/** Also looks in the sbin directories, where Debian keeps mkfs.vfat, sfdisk and mke2fs (runnable by anyone). */
function onPath(command: string): boolean {
  return [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'].some(
    (directory) => directory !== '' && readable(join(directory, command), constants.X_OK),
  );
}

function readable(path: string, mode = constants.R_OK): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}
