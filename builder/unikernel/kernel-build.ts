import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { sha256File } from '../../lib/hash.ts';
import { findHostTool } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuildReporter } from '../build-runner.ts';
import { CROSS_COMPILERS, type CompilerTarget } from '../native/cross-compiler.repository.ts';
import { hashOf } from '../steps/input-hash.ts';
import { stagedOutput } from '../steps/staged-output.ts';
import { type KconfigOption, kconfigFragment, type KernelPlan, optionsNotInConfig } from './kernel-config.ts';

/** Inside a finished kernel's folder: the kernel, its final .config, the options asked and why, its build time. */
export const KERNEL_FILES = {
  kernel: 'kernel',
  config: 'config',
  options: 'options.json',
  buildSeconds: 'build-seconds',
} as const;

/** Programs the kernel's build runs, and the Debian packages that bring them. */
const KERNEL_TOOLS = {
  make: 'make',
  flex: 'flex',
  bison: 'bison',
  bc: 'bc',
  tar: 'tar',
  xz: 'xz-utils',
} as const;
/** make's output kept for an error: the end of a failed compile says what went wrong. */
const KEPT_OUTPUT_LINES = 60;

export interface SpecialisedKernelInput {
  plan: KernelPlan;
  /** Debian's linux-source tarball (usr/src/linux-source-6.1.tar.xz of the unpacked package). */
  sourceTarball: string;
  /** Identifies the source in the cache key: the package's name, version and sha256. */
  source: { name: string; version: string; sha256: string };
  /** The VM's architecture as Debian names it: which compiler builds the kernel. */
  target: CompilerTarget;
  /** SOURCE_DATE_EPOCH: the kernel's build timestamp. */
  epoch: number;
  /** Finished kernels, one folder per configuration hash (`<cacheDir>/kernels`). */
  kernelsDir: string;
  /** Scratch space for the source tree. */
  work: string;
  reporter: BuildReporter;
}

export interface SpecialisedKernel {
  /** vmlinux (x86_64) or Image (arm64). */
  file: string;
  directory: string;
  configHash: string;
  reused: boolean;
  /** How long its first build took. */
  buildSeconds: number;
  sha256: string;
  /** The options added to tinyconfig, with why. */
  options: KconfigOption[];
}

/**
 * A kernel compiled from Debian's linux-source for one plan: `tinyconfig`, the plan's options
 * merged in, `olddefconfig`, then every option checked in the final .config (one missing is an
 * error naming it) and the kernel built with a fixed timestamp, user and host, so two builds give
 * the same bytes. Kept by the hash of source, options, compiler and epoch: the same
 * configuration again takes no time. Nothing is kept from a build that failed.
 */
export async function buildSpecialisedKernel(input: SpecialisedKernelInput): Promise<SpecialisedKernel> {
  const { plan, reporter } = input;
  const searchPath = process.env.PATH ?? '';
  const tools = Object.keys(KERNEL_TOOLS) as Array<keyof typeof KERNEL_TOOLS>;
  for (const tool of tools) await findHostTool(tool, KERNEL_TOOLS, searchPath);
  const compiler = CROSS_COMPILERS[input.target];
  await findHostTool(compiler.program, { [compiler.program]: compiler.package }, searchPath);
  const compilerVersion = (await run(compiler.program, ['--version'], input.work, {})).split('\n')[0];

  const configHash = hashOf({
    source: input.source,
    arch: plan.arch,
    target: plan.target,
    options: plan.options.map((option) => [option.name, option.value]),
    compiler: compilerVersion,
    epoch: input.epoch,
    buildCode: kernelBuildCodeHash(),
  });
  const directory = join(input.kernelsDir, `kernel-${plan.arch}-${configHash}`);
  reporter.log(
    `kernel: specialised, ${plan.options.length} options on tinyconfig, configuration ${configHash.slice(0, 16)}`,
  );
  for (const option of plan.options)
    reporter.log(`  CONFIG_${option.name}=${option.value}  (${option.reason})`);

  const started = performance.now();
  const reused = await stagedOutput(directory, async (staging) => {
    const tree = await extractSource(input);
    const make = (args: string[]) =>
      run(
        'make',
        [`ARCH=${plan.arch}`, `CROSS_COMPILE=${compiler.program.replace(/gcc$/, '')}`, ...args],
        tree,
        {
          KBUILD_BUILD_TIMESTAMP: new Date(input.epoch * 1000).toUTCString(),
          KBUILD_BUILD_USER: 'boardfleet',
          KBUILD_BUILD_HOST: 'boardfleet',
          KBUILD_BUILD_VERSION: '1',
          // The scratch folder's name differs per build; no path of it may end up in the kernel.
          KCFLAGS: `-ffile-prefix-map=${tree}=.`,
        },
        reporter.signal,
      );
    reporter.progress('configuring the kernel', 20);
    await make(['tinyconfig']);
    const fragment = join(input.work, 'boardfleet.config');
    await writeFile(fragment, kconfigFragment(plan.options));
    await run('scripts/kconfig/merge_config.sh', ['-m', '.config', fragment], tree, {});
    await make(['olddefconfig']);
    const finalConfig = await readFile(join(tree, '.config'), 'utf8');
    const missing = optionsNotInConfig(plan.options, finalConfig);
    if (missing.length > 0) {
      throw new BoardfleetError(
        'kernel-config-option-unknown',
        `${input.source.name} ${input.source.version} does not take ${missing
          .map((option) => `CONFIG_${option.name}=${option.value} (${option.reason})`)
          .join(', ')}: the source does not know it, or what it depends on is off`,
      );
    }
    reporter.progress(`compiling the kernel (${plan.target}, ${cpus().length} jobs)`, 25);
    await make([`-j${cpus().length}`, plan.target]);
    if (plan.target === 'vmlinux') {
      // The symbol table is a third of an ELF vmlinux; qemu and Firecracker load only its segments.
      await run(
        compiler.program.replace(/gcc$/, 'strip'),
        ['-o', join(staging, KERNEL_FILES.kernel), plan.output],
        tree,
        {},
      );
    } else {
      await copyFile(join(tree, plan.output), join(staging, KERNEL_FILES.kernel));
    }
    await writeFile(join(staging, KERNEL_FILES.config), finalConfig);
    await writeFile(join(staging, KERNEL_FILES.options), `${JSON.stringify(plan.options, null, 2)}\n`);
    await writeFile(
      join(staging, KERNEL_FILES.buildSeconds),
      ((performance.now() - started) / 1000).toFixed(1),
    );
  });
  const buildSeconds = Number(readFileSync(join(directory, KERNEL_FILES.buildSeconds), 'utf8'));
  reporter.log(
    reused ? `kernel: reused (first built in ${buildSeconds} s)` : `kernel: built in ${buildSeconds} s`,
  );
  const file = join(directory, KERNEL_FILES.kernel);
  return {
    file,
    directory,
    configHash,
    reused,
    buildSeconds,
    sha256: await sha256File(file),
    options: plan.options,
  };
}

/** The source tarball unpacked into the scratch folder; the tree's path. */
async function extractSource(input: SpecialisedKernelInput): Promise<string> {
  input.reporter.progress(`unpacking ${input.source.name}`, 10);
  await run('tar', ['-xJf', input.sourceTarball, '-C', input.work], input.work, {}, input.reporter.signal);
  const top = (await readdir(input.work)).find((name) => name.startsWith('linux-source'));
  if (!top) {
    throw new BoardfleetError('build-failed', `${input.sourceTarball} holds no linux-source folder`);
  }
  return join(input.work, top);
}

/** How a kernel is built (this file) is part of its cache key; the rest of the builder is not. */
function kernelBuildCodeHash(): string {
  return hashOf(readFileSync(new URL(import.meta.url), 'utf8'));
}

/**
 * Runs a program in `cwd` with a fixed locale. A failed make is `kernel-compile-failed` naming the
 * first file a compiler or linker complained about (else the last lines it printed); any other
 * program's failure is a build error with its last lines.
 */
function run(
  program: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, {
      cwd,
      env: { ...process.env, LC_ALL: 'C', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(signal ? { signal } : {}),
    });
    const lines: string[] = [];
    const partial = { stdout: '', stderr: '' };
    let stdout = '';
    let failure: ReturnType<typeof firstCompileError>;
    const keep = (chunk: Buffer, stream: 'stdout' | 'stderr') => {
      const text = partial[stream] + chunk.toString();
      if (stream === 'stdout' && stdout.length < 1 << 16) stdout += chunk.toString();
      const complete = text.split('\n');
      partial[stream] = complete.pop() ?? '';
      for (const line of complete) {
        failure ??= firstCompileError(line);
        lines.push(line);
      }
      if (lines.length > KEPT_OUTPUT_LINES * 4) lines.splice(0, lines.length - KEPT_OUTPUT_LINES);
    };
    child.stdout.on('data', (chunk: Buffer) => keep(chunk, 'stdout'));
    child.stderr.on('data', (chunk: Buffer) => keep(chunk, 'stderr'));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) return resolve(stdout);
      const output = [...lines, partial.stdout, partial.stderr]
        .filter(Boolean)
        .slice(-KEPT_OUTPUT_LINES)
        .join('\n');
      if (program !== 'make') {
        reject(
          new BoardfleetError('build-failed', `${program} ${args.join(' ')} exited ${code}:\n${output}`),
        );
        return;
      }
      reject(
        new BoardfleetError(
          'kernel-compile-failed',
          failure
            ? `the kernel did not compile: ${failure.file}: ${failure.message}`
            : `the kernel did not build (make ${args.at(-1)} exited ${code}):\n${output}`,
        ),
      );
    });
  });
}

/** The first `file:line: error:` a compiler or linker printed, or undefined. */
export function firstCompileError(output: string): { file: string; message: string } | undefined {
  for (const line of output.split('\n')) {
    const match = /^(\S+?\.(?:c|h|S|lds|ld)):(\d+)(?::\d+)?: (?:fatal )?error: (.*)$/.exec(line.trim());
    if (match) return { file: `${match[1]}:${match[2]}`, message: match[3] as string };
    const linker = /^(?:\S*ld(?:\.bfd)?): (\S+?\.o)[:(].*?(undefined reference.*|error.*)$/.exec(line.trim());
    if (linker) return { file: linker[1] as string, message: linker[2] as string };
  }
  return undefined;
}
