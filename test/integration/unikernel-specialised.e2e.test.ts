import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildReporter } from '../../builder/build-runner.ts';
import { recipePath } from '../../builder/recipe/recipe.ts';
import { defaultCacheDir } from '../../builder/steps/cached-step.ts';
import { buildUnikernel } from '../../builder/unikernel/unikernel-build.ts';
import { detectAccelerator, QemuVm } from '../../device-agent/vm/qemu-vm.ts';
import { extractBundle } from '../../device-agent/vm/vm-bundle.ts';

const run = promisify(execFile);
const EPOCH = 1_780_000_000;

/**
 * http-hello on a kernel compiled for it from Debian's linux-source-6.1. The kernel is kept in the
 * shared cache by its configuration's hash (CI keeps that cache), so only the first run compiles:
 * about 20 minutes on two busy cores, hence the long timeout.
 */
describe('a specialised kernel for http-hello', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-specialised-'));
  const vms: QemuVm[] = [];
  afterAll(() => {
    for (const vm of vms) vm.kill();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('builds a PVH vmlinux with its options in the log and the SBOM, reused next time; qemu boots it to its HTTP answer', async () => {
    const lines: string[] = [];
    const reporter: BuildReporter = {
      signal: new AbortController().signal,
      log: (line) => lines.push(line),
      progress: () => {},
    };
    const build = (steps: string) =>
      buildUnikernel(
        {
          recipeFile: recipePath('http-hello-specialised'),
          board: 'vm-x86_64',
          cacheDir: defaultCacheDir(),
          stepsDir: join(scratch, steps),
          sourceDateEpoch: EPOCH,
        },
        reporter,
      );
    const first = await build('steps-a');
    expect(lines.some((line) => /^packages: linux-source-6\.1=/.test(line))).toBe(true);
    expect(lines.some((line) => /^ {2}CONFIG_PVH=y {2}\(.*PVH entry/.test(line))).toBe(true);
    const second = await build('steps-b');
    expect(second.specialisedKernel?.reused).toBe(true);
    expect(second.specialisedKernel?.configHash).toBe(first.specialisedKernel?.configHash);

    const sbom = JSON.parse(readFileSync(first.sbom, 'utf8')) as {
      packages: Array<{ name: string; comment?: string }>;
    };
    const kernel = sbom.packages.find((pkg) => pkg.name === 'linux-specialised');
    expect(kernel?.comment).toMatch(/^tinyconfig plus .*CONFIG_VIRTIO_NET=y \(virtio-net: network: dhcp\)/);

    const bundleDir = join(scratch, 'bundle');
    await extractBundle(first.bundle, bundleDir, 'http-hello-specialised');
    // An ELF vmlinux (what Firecracker wants, qemu boots it at its PVH entry), stripped. Most of
    // its bytes are the zero padding between 2 MB-aligned segments: under 3 MB to move.
    const kernelFile = join(bundleDir, 'kernel');
    expect((await run('file', ['-b', kernelFile])).stdout).toMatch(
      /^ELF 64-bit LSB executable, x86-64.*, stripped$/m,
    );
    expect(gzipSync(readFileSync(kernelFile)).length).toBeLessThan(3 * 1024 * 1024);

    const consoleLines: string[] = [];
    const vm = new QemuVm({
      bundleDir,
      accelerator: await detectAccelerator('x86_64', { kernel: join(bundleDir, 'kernel') }),
      onConsoleLine: (line) => consoleLines.push(line),
    });
    vms.push(vm);
    await vm.start();
    await vm.waitForReady({ http: { port: 8080, path: '/healthz' } }, 120_000);
    expect(await (await fetch(`http://127.0.0.1:${vm.hostPort(8080)}/`)).text()).toBe('hello 2.0.0\n');
    expect(consoleLines).toContain('boardfleet-init: exec /app/http-hello-specialised');
    const exit = await vm.stop({ graceMs: 30_000 });
    expect(consoleLines).toContain('http-hello 2.0.0: stopping, powering off');
    expect(exit.code).toBe(0);
  }, 2_400_000);
});
