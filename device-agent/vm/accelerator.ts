import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { hostToolMissing, locateHostTool } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { QEMU_MACHINES, type VmArchitecture } from '../../protocol/unikernel-image.ts';

export type AcceleratorPreference = 'auto' | 'kvm' | 'tcg';

export interface AcceleratorChoice {
  accel: 'kvm' | 'tcg';
  /** Why, in words for a person: printed by run-image, logged by the agent, named by the benchmark. */
  reason: string;
}

/** The architecture qemu calls the host's, for KVM (which only runs the host's own). */
const HOST_ARCHITECTURE: Partial<Record<NodeJS.Architecture, VmArchitecture>> = {
  x64: 'x86_64',
  arm64: 'arm64',
};
const PROBE_TIMEOUT_MS = 8_000;
const PROBE_CMDLINE: Record<VmArchitecture, string> = {
  x86_64: 'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1',
  arm64: 'console=ttyAMA0 earlycon panic=-1',
};

/**
 * The qemu binary for `arch` on the PATH; throws `qemu-missing` naming the Debian package
 * when there is none.
 */
export function qemuBinary(arch: VmArchitecture, searchPath = process.env.PATH ?? ''): string {
  const { binary, debianPackage } = QEMU_MACHINES[arch];
  const path = locateHostTool(binary, searchPath);
  if (path) return path;
  throw hostToolMissing(binary, debianPackage, searchPath, 'qemu-missing');
}

const probes = new Map<string, Promise<AcceleratorChoice>>();

/**
 * KVM when it really runs this kernel, else TCG, and why. KVM must be the host's architecture,
 * /dev/kvm must open read-write, and a short qemu run with `-accel kvm` must get `kernel` to
 * print its first line: a /dev/kvm that opens is not enough (nested virtualisation that runs the
 * BIOS but hangs when the kernel enters long mode is common in cloud VMs). The probe's answer is
 * kept for the life of the process.
 */
export function detectAccelerator(
  arch: VmArchitecture,
  options: { kernel: string; preference?: AcceleratorPreference; searchPath?: string },
): Promise<AcceleratorChoice> {
  const preference = options.preference ?? 'auto';
  if (preference === 'tcg')
    return Promise.resolve({ accel: 'tcg', reason: 'TCG (software emulation) as configured' });
  const key = `${arch}\0${options.kernel}`;
  let probe = probes.get(key);
  if (!probe) {
    probe = probeKvm(arch, options.kernel, options.searchPath);
    probes.set(key, probe);
  }
  return probe.then((choice) => {
    if (preference === 'kvm' && choice.accel !== 'kvm') {
      throw new BoardfleetError('kvm-unusable', `KVM was asked for but cannot be used: ${choice.reason}`);
    }
    return choice;
  });
}

async function probeKvm(
  arch: VmArchitecture,
  kernel: string,
  searchPath?: string,
): Promise<AcceleratorChoice> {
  const tcg = (why: string): AcceleratorChoice => ({
    accel: 'tcg',
    reason: `TCG (software emulation): ${why}`,
  });
  const host = HOST_ARCHITECTURE[process.arch];
  if (host !== arch) {
    return tcg(
      `KVM only runs the host's own architecture, and this host is ${process.arch}, the image ${arch}`,
    );
  }
  if (!existsSync('/dev/kvm'))
    return tcg('/dev/kvm does not exist (no virtualisation in this CPU or kernel)');
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch (error) {
    return tcg(
      `/dev/kvm cannot be opened read-write (${(error as NodeJS.ErrnoException).code}): add the user to the kvm group`,
    );
  }
  const binary = qemuBinary(arch, searchPath);
  const { machine, console } = QEMU_MACHINES[arch];
  const outcome = await new Promise<{ booted: true } | { booted: false; why: string }>((resolve) => {
    const child = spawn(
      binary,
      [
        ...['-M', machine, '-accel', 'kvm', '-cpu', 'host', '-m', '128', '-nodefaults', '-no-reboot'],
        ...['-display', 'none', '-serial', 'stdio', '-kernel', kernel, '-append', PROBE_CMDLINE[arch]],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    let errors = '';
    const finish = (result: { booted: true } | { booted: false; why: string }) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(result);
    };
    const timer = setTimeout(
      () =>
        finish({
          booted: false,
          why: `/dev/kvm opens, but qemu -accel kvm did not get the kernel to print on ${console} within ${PROBE_TIMEOUT_MS / 1000} s (nested virtualisation off or broken)`,
        }),
      PROBE_TIMEOUT_MS,
    );
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('latin1');
      if (output.includes('Linux version')) finish({ booted: true });
    });
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString('utf8')));
    child.on('error', (error) => finish({ booted: false, why: `qemu did not start: ${error.message}` }));
    child.on('exit', (code) =>
      finish({
        booted: false,
        why: `qemu -accel kvm exited (status ${code}) before the kernel printed: ${errors.trim().split('\n').pop() ?? ''}`,
      }),
    );
  });
  return outcome.booted
    ? { accel: 'kvm', reason: 'KVM: /dev/kvm is usable and runs this kernel' }
    : tcg(outcome.why);
}
