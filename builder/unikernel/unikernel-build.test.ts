import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { launchSpecSchema } from '../../protocol/unikernel-image.ts';
import type { BuildReporter } from '../build-runner.ts';
import { defaultCacheDir } from '../steps/cached-step.ts';
import { sha256File } from '../../lib/hash.ts';
import { ELF_MACHINE, readElfInfo } from '../native/elf-file.ts';
import { buildUnikernel } from './unikernel-build.ts';
import { loadRecipeOfKind, RECIPES_DIRECTORY } from '../recipe/recipe.ts';

const run = promisify(execFile);
const HTTP_HELLO = join(RECIPES_DIRECTORY, 'http-hello.yaml');
const EPOCH = 1_780_000_000;

const reporter = (lines: string[] = []): BuildReporter => ({
  signal: new AbortController().signal,
  log: (line) => lines.push(line),
  progress: () => {},
});

async function tarNames(tar: string): Promise<string[]> {
  return (await run('tar', ['tf', tar])).stdout.trim().split('\n');
}

/** The initramfs's entries (`path` for files, `path/` for folders), from its zstd cpio. */
async function initramfsEntries(bundleTar: string, scratch: string): Promise<string[]> {
  await run('tar', ['xf', bundleTar, '-C', scratch, 'initramfs.img']);
  const { stdout } = await run('sh', ['-c', `zstd -dc "${scratch}/initramfs.img" | cpio -it --quiet`]);
  return stdout.trim().split('\n').sort();
}

describe('unikernel builds', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-unikernel-build-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  // Downloads are shared with every other build on this machine; the finished steps are not.
  const cacheDir = defaultCacheDir();
  /** http-hello for vm-x86_64 at a fixed epoch, its finished steps kept in `scratch/<steps>`. */
  const buildHttpHello = (steps: string, lines?: string[]) =>
    buildUnikernel(
      {
        recipeFile: HTTP_HELLO,
        board: 'vm-x86_64',
        cacheDir,
        stepsDir: join(scratch, steps),
        sourceDateEpoch: EPOCH,
      },
      reporter(lines),
    );

  it('gives the same bytes from two builds with empty step caches, and says what went in', async () => {
    const lines: string[] = [];
    const first = await buildHttpHello('steps-a', lines);
    const second = await buildHttpHello('steps-b');
    expect(second.reusedSteps).toEqual([]);
    expect(await sha256File(second.bundle)).toBe(await sha256File(first.bundle));
    expect(readFileSync(second.sbom, 'utf8')).toBe(readFileSync(first.sbom, 'utf8'));

    expect(await tarNames(first.bundle)).toEqual([
      'launch.json',
      'kernel',
      'initramfs.img',
      'firecracker.json',
    ]);
    expect(first.files.map((file) => [file.role, file.name, file.kind])).toEqual([
      ['unikernel', 'http-hello-vm-x86_64', 'unikernel'],
      ['sbom', 'http-hello-vm-x86_64-sbom', 'sbom'],
    ]);
    expect(first.files[0]!.boards).toEqual(['vm-x86_64', 'generic-x64']);
    expect(
      lines.some((line) =>
        /^kernel \d+ bytes, initramfs \d+ bytes \(\d+ unpacked\), bundle \d+ bytes/.test(line),
      ),
    ).toBe(true);

    const spec = launchSpecSchema.parse(first.launchSpec);
    expect(spec).toMatchObject({
      name: 'http-hello',
      version: '2.0.0',
      architecture: 'x86_64',
      memoryMiB: 128,
      network: { mode: 'dhcp' },
      ports: [{ guest: 8080, protocol: 'tcp' }],
      readiness: { http: { port: 8080, path: '/healthz' } },
      stop: 'ctrl-alt-del',
    });
    expect(spec.cmdline).toBe('console=ttyS0 panic=-1 rdinit=/sbin/boardfleet-init quiet');
    // Small: the kernel is Debian's cloud flavour; the initramfs holds two static programs and a few modules.
    expect(first.sizes.initramfs).toBeLessThan(2 * 1024 * 1024);

    const sbom = JSON.parse(readFileSync(first.sbom, 'utf8')) as { packages: Array<{ name: string }> };
    const names = sbom.packages.map((pkg) => pkg.name);
    expect(names).toContain('http-hello');
    expect(names.some((name) => /^linux-image-6\.\d+\.\d+-\d+-cloud-amd64$/.test(name))).toBe(true);

    const warm = await buildHttpHello('steps-a');
    expect(warm.reusedSteps).toEqual(['initramfs', 'bundle', 'sbom']);
    expect(warm.bundle).toBe(first.bundle);
  }, 600_000);

  it('puts only the pre-init, the application, its modules and their config in the initramfs: no shell', async () => {
    const built = await buildHttpHello('steps-a');
    const entries = await initramfsEntries(built.bundle, scratch);
    const files = entries.filter(
      (entry) =>
        !entry.startsWith('lib/modules') &&
        !/^(app|dev|etc|etc\/boardfleet|lib|proc|sbin|sys|tmp|var|var\/lib|var\/lib\/boardfleet)$/.test(
          entry,
        ),
    );
    expect(files).toEqual([
      'app/http-hello',
      'dev/console',
      'etc/boardfleet/image.json',
      'etc/boardfleet/init.conf',
      'sbin/boardfleet-init',
    ]);
    expect(
      entries
        .filter((entry) => entry.endsWith('.ko'))
        .map((entry) => entry.split('/').pop())
        .sort(),
    ).toEqual([
      'failover.ko',
      'net_failover.ko',
      'virtio-rng.ko',
      'virtio.ko',
      'virtio_net.ko',
      'virtio_pci.ko',
      'virtio_pci_legacy_dev.ko',
      'virtio_pci_modern_dev.ko',
      'virtio_ring.ko',
    ]);
    const unpacked = join(scratch, 'unpacked');
    await run('sh', [
      '-c',
      `mkdir -p "${unpacked}" && cd "${unpacked}" && zstd -dc ../initramfs.img | cpio -id --quiet`,
    ]);
    for (const program of ['sbin/boardfleet-init', 'app/http-hello']) {
      expect(await readElfInfo(join(unpacked, program)), program).toMatchObject({
        machine: ELF_MACHINE.amd64,
        interpreter: null,
        needed: [],
      });
    }
    const config = readFileSync(join(unpacked, 'etc/boardfleet/init.conf'), 'utf8').trim().split('\n');
    expect(config.filter((line) => line.startsWith('module ')).at(-2)).toMatch(/\/virtio_net\.ko$/);
    expect(config).toContain('net dhcp eth0');
    expect(config).toContain('env BOARDFLEET_IMAGE_VERSION=2.0.0');
    expect(config).toContain('env HELLO_PORT=8080');
    expect(config.at(-1)).toBe('exec /app/http-hello');
  }, 600_000);

  it('checks recipes, listing every problem with the file name', () => {
    const recipe = (text: string) => {
      const file = join(scratch, `recipe-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(file, text);
      return file;
    };
    const problems = (text: string) => {
      try {
        loadRecipeOfKind(recipe(text), 'unikernel');
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error('the recipe loaded');
    };
    const both = problems(
      'kind: unikernel\nname: x\nversion: 1.0.0\napp:\n  c: { sources: [a.c] }\n  node: { boardfleetAgent: true }\n',
    );
    expect(both).toContain('is not a valid unikernel recipe');
    expect(both).toContain('app: give exactly one of c or node');
    const readiness = problems(
      'kind: unikernel\nname: x\nversion: 1.0.0\napp: { c: { sources: [a.c] } }\nports: [80]\nreadiness: { http: { port: 8080 } }\nmemory: 5\n',
    );
    expect(readiness).toContain('readiness.http.port: port 8080 is not among ports (80)');
    expect(readiness).toMatch(/Unrecognized key.*"memory"/);
    expect(
      problems('kind: unikernel\nname: x\nversion: 1.0.0\napp: { c: { sources: [missing.c] } }\n'),
    ).toMatch(/app\.c\.sources\.0: .*missing\.c is not a file/);
    expect(
      problems(
        'kind: unikernel\nname: x\nversion: 1.0.0\napp: { c: { sources: [a.c] }, env: { "bad name": "1" } }\n',
      ),
    ).toContain('app.env.bad name: an upper-case name such as PORT');
  });

  it('refuses a board that is not a virtual machine, naming the ones that are', async () => {
    await expect(
      buildUnikernel(
        { recipeFile: HTTP_HELLO, board: 'rpi-4b', cacheDir, stepsDir: join(scratch, 'steps-c') },
        reporter(),
      ),
    ).rejects.toThrow('unikernel images are built for vm-arm64, vm-x86_64');
  });
});
