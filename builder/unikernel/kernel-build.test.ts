import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildReporter } from '../build-runner.ts';
import { openDebianArchive } from '../debian/build-archive.ts';
import { defaultCacheDir } from '../steps/cached-step.ts';
import { buildSpecialisedKernel, firstCompileError } from './kernel-build.ts';
import { planKernelConfig } from './kernel-config.ts';

describe('firstCompileError', () => {
  it.each([
    {
      case: 'a C error',
      output:
        '  CC      init/main.o\ninit/main.c:42:7: error: expected ‘;’ before ‘}’ token\nmake[2]: *** Error 1',
      error: { file: 'init/main.c:42', message: 'expected ‘;’ before ‘}’ token' },
    },
    {
      case: 'a missing header',
      output: 'drivers/virtio/virtio.c:3:10: fatal error: linux/nope.h: No such file or directory',
      error: { file: 'drivers/virtio/virtio.c:3', message: 'linux/nope.h: No such file or directory' },
    },
    {
      case: 'an undefined symbol at link time',
      output:
        "  LD      vmlinux.o\nld: init/main.o: in function `start_kernel':\nld: init/main.o:(.text+0x1f): undefined reference to `nope'",
      error: { file: 'init/main.o', message: "undefined reference to `nope'" },
    },
    { case: 'only warnings', output: 'fs/exec.c:10:2: warning: unused variable', error: undefined },
  ])('$case', ({ output, error }) => {
    expect(firstCompileError(output)).toEqual(error);
  });
});

describe('buildSpecialisedKernel against linux-source-6.1', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-kernel-build-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('refuses an option the source does not know, naming it, and keeps nothing', async () => {
    const reporter: BuildReporter = {
      signal: new AbortController().signal,
      log: () => {},
      progress: () => {},
    };
    const base = { mirror: 'http://deb.debian.org/debian', suite: 'bookworm', components: ['main'] };
    const { archive } = await openDebianArchive(
      base,
      'amd64',
      { cacheDir: defaultCacheDir(), sourceDateEpoch: 1 },
      reporter,
    );
    const source = archive.find('linux-source-6.1')!;
    const { root } = await archive.unpack(source);
    const recipe = {
      name: 'hello',
      app: { args: [], env: {}, c: { sources: ['hello.c'], cflags: [] } },
      network: { mode: 'none' as const },
      stop: 'kill' as const,
      cpus: 1,
      kernel: { config: 'specialised' as const, modules: [], cmdline: [], filesystems: [], devices: [] },
    };
    const plan = planKernelConfig(recipe, { id: 'vm-x86_64', architecture: 'amd64' });
    plan.options.push({ name: 'BOARDFLEET_NO_SUCH_OPTION', value: 'y', reason: 'asked by this test' });
    const kernelsDir = join(scratch, 'kernels');
    await expect(
      buildSpecialisedKernel({
        plan,
        sourceTarball: join(root, 'usr/src/linux-source-6.1.tar.xz'),
        source: { name: source.name, version: source.version, sha256: source.sha256 },
        target: 'amd64',
        epoch: 1_780_000_000,
        kernelsDir,
        work: mkdtempSync(join(scratch, 'work-')),
        reporter,
      }),
    ).rejects.toThrow(/does not take CONFIG_BOARDFLEET_NO_SUCH_OPTION=y \(asked by this test\)/);
    expect(existsSync(kernelsDir) ? readdirSync(kernelsDir) : []).toEqual([]);
  }, 600_000);
});
