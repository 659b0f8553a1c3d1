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
];

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'Check the tools Boardfleet runs (firmware builds, simulated boards, ports) and name the Debian packages to install',
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

function onPath(command: string): boolean {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .some((directory) => readable(join(directory, command), constants.X_OK));
}

function readable(path: string, mode = constants.R_OK): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}
