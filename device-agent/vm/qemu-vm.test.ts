import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLE_FILES, type LaunchSpec } from '../../protocol/unikernel-image.ts';
import {
  buildFixtureBundle,
  type FixtureBundle,
  removeFixtureBundles,
  tcgWaits,
  timeTcgBoot,
} from '../../test/support/unikernel-fixture.ts';
import { ConsoleCapture } from './console-capture.ts';
import { detectAccelerator, qemuArguments, qemuBinary, QemuVm, VmNotReadyError } from './qemu-vm.ts';

const TCG = { accel: 'tcg', reason: 'the tests run under TCG' } as const;

const baseSpec: LaunchSpec = {
  schemaVersion: 1,
  name: 'svc',
  version: '1.0.0',
  architecture: 'x86_64',
  cmdline: 'console=ttyS0 panic=-1',
  memoryMiB: 128,
  cpus: 2,
  network: { mode: 'dhcp' },
  ports: [{ guest: 8080, protocol: 'tcp' }],
  stop: 'kill',
  sizes: { kernel: 1, initramfs: 1 },
};

const argsFor = (spec: LaunchSpec, accel: 'kvm' | 'tcg' = 'tcg') =>
  qemuArguments({
    spec,
    bundleDir: '/b',
    accel,
    env: { SERVER: 'http://10.0.2.2:8080' },
    forwards: [{ guest: 8080, host: 0, protocol: 'tcp' }],
    forwardAddress: '127.0.0.1',
    memoryMiB: 256,
    qmpSocket: '/s/qmp.sock',
  });

describe('qemu arguments', () => {
  it('boots the bundle with the launch environment on the command line and forwards ports', () => {
    const args = argsFor(baseSpec).join(' ');
    expect(args).toContain('-M q35 -accel tcg -cpu max -m 256 -smp 2');
    expect(args).toContain('-kernel /b/kernel -initrd /b/initramfs.img');
    expect(args).toContain('-append console=ttyS0 panic=-1 SERVER=http://10.0.2.2:8080');
    expect(args).toContain(
      '-netdev user,id=net0,hostfwd=tcp:127.0.0.1:0-:8080 -device virtio-net-pci,netdev=net0',
    );
    expect(args).toContain('-qmp unix:/s/qmp.sock,server=on,wait=off');
    expect(args).toContain('-device virtio-rng-pci');
    expect(args).not.toContain('virtio-keyboard-pci');
  });

  it('gives an arm64 VM a keyboard for ctrl-alt-del, which the virt machine lacks', () => {
    const args = argsFor({ ...baseSpec, architecture: 'arm64' }).join(' ');
    expect(args).toContain('-M virt -accel tcg -cpu cortex-a72');
    expect(args).toContain('-device virtio-keyboard-pci');
  });

  it('uses the host CPU under KVM and forwards to a static guest address', () => {
    const args = argsFor(
      { ...baseSpec, network: { mode: 'static', address: '10.0.2.20/24', dns: [] } },
      'kvm',
    ).join(' ');
    expect(args).toContain('-accel kvm -cpu host');
    expect(args).toContain('hostfwd=tcp:127.0.0.1:0-10.0.2.20:8080');
  });

  it('gives a VM without network no network device at all', () => {
    const args = argsFor({ ...baseSpec, network: { mode: 'none' } });
    expect(args).not.toContain('-netdev');
    expect(args.join(' ')).not.toContain('virtio-net');
  });

  it('refuses launch environment the kernel command line would split', () => {
    expect(() =>
      qemuArguments({
        spec: baseSpec,
        bundleDir: '/b',
        accel: 'tcg',
        env: { GREETING: 'two words' },
        forwards: [],
        forwardAddress: '127.0.0.1',
        memoryMiB: 128,
        qmpSocket: '/s',
      }),
    ).toThrow(/GREETING may not hold spaces/);
  });

  it('names the Debian package when qemu is missing', () => {
    const empty = mkdtempSync(join(tmpdir(), 'bf-nopath-'));
    expect(() => qemuBinary('x86_64', empty)).toThrow(
      /qemu-system-x86_64 is not installed.*apt-get install qemu-system-x86/,
    );
    expect(() => qemuBinary('arm64', empty)).toThrow(/qemu-system-aarch64.*qemu-system-arm/);
  });
});

describe('console capture', () => {
  it('splits lines, keeps the last ones in memory and cuts the file to its tail at the cap', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'bf-console-')), 'console.log');
    const capture = new ConsoleCapture({ file, fileCapBytes: 1000, ringLines: 5 });
    const seen: string[] = [];
    capture.onLine((line) => seen.push(line));
    capture.write('first li');
    capture.write('ne\r\nsecond\n');
    expect(seen).toEqual(['first line', 'second']);
    for (let index = 0; index < 100; index++)
      capture.write(`line ${String(index).padStart(3, '0')} ${'x'.repeat(20)}\n`);
    expect(capture.tail()).toHaveLength(5);
    expect(capture.tail(1)).toEqual([`line 099 ${'x'.repeat(20)}`]);
    const text = readFileSync(file, 'utf8');
    expect(statSync(file).size).toBeLessThanOrEqual(1000);
    expect(text.startsWith('line ')).toBe(true);
    expect(text.endsWith(`line 099 ${'x'.repeat(20)}\n`)).toBe(true);
    expect(text).not.toContain('first line');
  });
});

describe('QemuVm with the fixture bundle (TCG)', async () => {
  // Timed before the tests are declared, as their timeouts come from it: a loaded machine boots
  // slower and gets longer waits, an idle one keeps the usual ones.
  const { readyMs, stopMs, testMs } = tcgWaits(await timeTcgBoot());
  let serving: FixtureBundle;
  let crashing: FixtureBundle;
  let idle: FixtureBundle;
  let offline: FixtureBundle;

  beforeAll(async () => {
    serving = await buildFixtureBundle({ version: '1.0.0' });
    crashing = await buildFixtureBundle({ version: '1.0.1', behaviour: 'crash' });
    idle = await buildFixtureBundle({ version: '1.0.2', behaviour: 'never-ready' });
    offline = await buildFixtureBundle({ version: '1.0.3', network: 'none', stop: 'kill' });
  }, 300_000);

  afterAll(() => removeFixtureBundles());

  it('says which accelerator it picks and why, and refuses KVM when KVM cannot run the kernel', async () => {
    const kernel = join(serving.dir, 'kernel');
    const choice = await detectAccelerator('x86_64', { kernel });
    // Detected, never required: KVM works on some hosts and not on others; each answer has its checks.
    if (choice.accel === 'kvm') {
      expect(choice.reason).toBe('KVM: /dev/kvm is usable and runs this kernel');
      expect(await detectAccelerator('x86_64', { kernel, preference: 'kvm' })).toEqual(choice);
    } else {
      expect(choice.reason).toMatch(/^TCG \(software emulation\): .{10}/);
      await expect(detectAccelerator('x86_64', { kernel, preference: 'kvm' })).rejects.toThrow(
        /^KVM was asked for but cannot be used: TCG \(software emulation\): /,
      );
    }
    // A file that is no kernel: KVM cannot run it on any host, so this refusal is checked everywhere.
    const notAKernel = join(serving.dir, BUNDLE_FILES.launchSpec);
    expect((await detectAccelerator('x86_64', { kernel: notAKernel })).accel).toBe('tcg');
    await expect(detectAccelerator('x86_64', { kernel: notAKernel, preference: 'kvm' })).rejects.toThrow(
      /^KVM was asked for but cannot be used: TCG \(software emulation\): /,
    );
    expect(await detectAccelerator('x86_64', { kernel, preference: 'tcg' })).toEqual({
      accel: 'tcg',
      reason: 'TCG (software emulation) as configured',
    });
    // Another architecture never gets KVM.
    expect((await detectAccelerator('arm64', { kernel })).reason).toMatch(/host's own architecture/);
  }, 60_000);

  it(
    'boots, gets ready by HTTP and console line, serves through the forwarded port, and stops cleanly on ctrl-alt-del',
    async () => {
      const consoleFile = join(mkdtempSync(join(tmpdir(), 'bf-vm-test-')), 'console.log');
      const lines: string[] = [];
      const vm = new QemuVm({
        bundleDir: serving.dir,
        accelerator: TCG,
        consoleFile,
        onConsoleLine: (line) => lines.push(line),
      });
      await vm.start();
      try {
        await vm.waitForReady(serving.spec.readiness as NonNullable<LaunchSpec['readiness']>, readyMs);
        const response = await fetch(`http://127.0.0.1:${vm.hostPort(8080)}/`);
        expect(await response.text()).toBe('hello 1.0.0\n');
      } finally {
        const exit = await vm.stop({ graceMs: stopMs });
        expect(exit.description).toBe('the guest powered off');
      }
      expect(lines).toContain('fixture-http stopping');
      const file = readFileSync(consoleFile, 'utf8');
      expect(file).toMatch(/^=== fixture-http 1\.0\.0 started .* under tcg ===$/m);
      expect(file).toContain('fixture-http 1.0.0 listening on 8080');
    },
    testMs,
  );

  it(
    'boots a VM without network, ready by its console line, and ends it at once when its image says kill',
    async () => {
      const vm = new QemuVm({ bundleDir: offline.dir, accelerator: TCG });
      await vm.start();
      try {
        expect(() => vm.hostPort(8080)).toThrow(/not forwarded/);
        await vm.waitForReady(offline.spec.readiness as NonNullable<LaunchSpec['readiness']>, readyMs);
      } finally {
        const exit = await vm.stop({ graceMs: stopMs });
        expect(exit.description).toBe('qemu was stopped by a signal');
      }
      expect(vm.console.tail()).not.toContain('fixture-http stopping');
    },
    testMs,
  );

  it(
    'rejects readiness as soon as the VM exits, with how it ended and its last console lines',
    async () => {
      const vm = new QemuVm({ bundleDir: crashing.dir, accelerator: TCG });
      await vm.start();
      const exitedAt = vm.exited.then(() => performance.now());
      const error = await vm
        .waitForReady(crashing.spec.readiness as NonNullable<LaunchSpec['readiness']>, readyMs)
        .catch((caught: unknown) => caught);
      const rejectedAt = performance.now();
      expect(error).toBeInstanceOf(VmNotReadyError);
      const notReady = error as VmNotReadyError;
      expect(notReady.code).toBe('vm-exited');
      expect(notReady.message).toMatch(
        /^fixture-http 1\.0\.1 exited before it was ready: the guest rebooted/,
      );
      expect(notReady.consoleTail).toContain('fixture-http 1.0.1 is crashing on purpose');
      expect(notReady.consoleTail.join('\n')).toMatch(/Kernel panic - not syncing: Attempted to kill init/);
      // At the exit, not at a later poll or the timeout: at worst one HTTP probe (3 s) was under way.
      expect(rejectedAt - (await exitedAt)).toBeLessThan(5_000);
    },
    testMs,
  );

  it(
    'times out a VM that runs but never answers, saying what was missing',
    async () => {
      const vm = new QemuVm({ bundleDir: idle.dir, accelerator: TCG });
      await vm.start();
      try {
        const error = await vm
          .waitForReady({ http: { port: 8080, path: '/' } }, 20_000)
          .catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(VmNotReadyError);
        expect((error as VmNotReadyError).message).toMatch(
          /^fixture-http 1\.0\.2 not ready after 20 s: HTTP on guest port 8080: GET \/: /,
        );
        expect(vm.exit).toBeNull();
      } finally {
        await vm.stop({ graceMs: stopMs });
      }
      expect(vm.exit).not.toBeNull();
    },
    testMs,
  );
});
