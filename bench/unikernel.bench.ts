// `npm run bench -- unikernel [--recipe http-hello] [--board vm-x86_64] [--boots 5] [--line REGEX]`:
// a unikernel image's sizes, its build with empty step caches (downloads stay cached: the network
// is not what is measured) and warm, and boot-to-application-ready under qemu (median of N boots,
// TCG, and KVM when usable) with qemu's resident size once ready; `--line` is the application's
// "I am up" console line, timed as well. The baseline, booted in the same rounds: the same kernel
// with a busybox shell initramfs (a conventional minimal Linux) that loads the same modules, gets
// an address with udhcpc and serves HTTP with busybox httpd, to its HTTP answer. And in the same
// rounds, `--specialised RECIPE` (default http-hello-specialised; '' for none): the same service on a
// kernel compiled for it (`kernel: specialised`), with its kernel's size and first build time.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { type AcceleratorChoice, detectAccelerator, QemuVm } from '../device-agent/vm/qemu-vm.ts';
import { BUNDLE_FILES, type LaunchSpec, launchSpecSchema } from '../protocol/unikernel-image.ts';
import type { BuildReporter } from '../builder/build-runner.ts';
import { recipePath } from '../builder/recipe/recipe.ts';
import { defaultCacheDir } from '../builder/steps/cached-step.ts';
import { buildUnikernel } from '../builder/unikernel/unikernel-build.ts';
import { BASELINE_READY_LINE, makeBaselineBundle } from './unikernel-baseline.ts';

const exec = promisify(execFile);

/** A boot that is not ready in this long under TCG is broken, not slow. */
const READY_TIMEOUT_MS = 180_000;
/** Readiness is polled this often: finer than the runner's own 500 ms, which would blur the figures. */
const HTTP_POLL_MS = 20;
/**
 * One readiness request waits this long. Before the guest listens, qemu's user network accepts
 * the connection on the host and then waits on the guest: a long wait here would make the
 * figures steps of the timeout rather than the boot.
 */
const HTTP_ATTEMPT_MS = 250;
/** What the shared build cache holds that a cold build must redo (the rest is downloads). */
const BUILT_IN_CACHE = new Set(['image-steps', 'static-programs']);

interface Boot {
  /** qemu started → the application's console line (`--line`), null when it never printed one. */
  lineMs: number | null;
  /** qemu started → every readiness check of the spec passed. */
  readyMs: number;
  /** qemu's VmRSS once ready. */
  rssBytes: number;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      recipe: { type: 'string', default: 'http-hello' },
      board: { type: 'string', default: 'vm-x86_64' },
      boots: { type: 'string', default: '5' },
      /** A console line the application prints when it is up, timed besides the spec's readiness. */
      line: { type: 'string', default: 'listening on' },
      specialised: { type: 'string', default: 'http-hello-specialised' },
    },
  });
  const boots = Number(values.boots);
  if (!(Number.isInteger(boots) && boots > 0))
    throw new Error(`--boots must be a positive whole number, not ${values.boots}`);
  const work = mkdtempSync(join(tmpdir(), 'unikernel-bench-'));
  const recipeFile = recipePath(values.recipe);
  const reporter: BuildReporter = { signal: new AbortController().signal, log: () => {}, progress: () => {} };
  process.stdout.write(`unikernel benchmark: ${values.recipe} for ${values.board}\n\n`);
  try {
    // A cache of our own that shares the downloads but none of the built steps or compiled programs.
    const cacheDir = join(work, 'cache');
    mkdirSync(cacheDir);
    const shared = defaultCacheDir();
    // Specialised kernels are kept by configuration hash like downloads: a first compile is kept for the next run.
    mkdirSync(join(shared, 'kernels'), { recursive: true });
    for (const entry of readdirSync(shared)) {
      if (!BUILT_IN_CACHE.has(entry) && !entry.startsWith('work-'))
        symlinkSync(join(shared, entry), join(cacheDir, entry));
    }
    const build = () =>
      buildUnikernel({ recipeFile, board: values.board, cacheDir, stepsDir: join(work, 'steps') }, reporter);
    let started = performance.now();
    const cold = await build();
    const coldSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    const warm = await build();
    const warmSeconds = (performance.now() - started) / 1000;
    if (warm.inputsHash !== cold.inputsHash) throw new Error('the warm build had other inputs');

    const bundleDir = join(work, 'image');
    mkdirSync(bundleDir);
    await exec('tar', ['-xf', cold.bundle, '-C', bundleDir]);
    const baselineDir = join(work, 'baseline');
    mkdirSync(baselineDir);
    await makeBaselineBundle({
      image: cold.launchSpec,
      imageDir: bundleDir,
      bundleDir: baselineDir,
      cacheDir: shared,
      epoch: 1_700_000_000,
    });
    const baseline = readSpec(baselineDir);
    const specialised = values.specialised
      ? await buildSpecialised(
          values.specialised,
          values.board,
          cacheDir,
          join(work, 'specialised'),
          reporter,
        )
      : undefined;
    process.stdout.write(
      [
        `build, empty step cache (downloads and unpacked packages cached, C programs compiled again): ${coldSeconds.toFixed(1)} s`,
        `build, warm (every step reused): ${warmSeconds.toFixed(2)} s  (${warm.reusedSteps.join(', ')})`,
        '',
        `bundle (uncompressed tar): ${kib(cold.sizes.bundle)}`,
        `  kernel ${kib(cold.sizes.kernel)}, initramfs ${kib(cold.sizes.initramfs)} zstd (${kib(cold.sizes.initramfsUncompressed)} unpacked)`,
        `baseline initramfs (busybox, the same modules, an /init script; zstd): ${kib(baseline.sizes.initramfs)}`,
        '',
      ].join('\n'),
    );
    await measureBoots(
      cold.launchSpec,
      bundleDir,
      baseline,
      baselineDir,
      boots,
      new RegExp(values.line),
      specialised,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The image on a kernel of its own, built (its kernel reused from the shared cache when built before) and unpacked. */
interface SpecialisedImage {
  spec: LaunchSpec;
  bundleDir: string;
  /** The kernel's first build (kept by its configuration's hash), and this image's build around it. */
  kernelBuildSeconds: number;
  kernelReused: boolean;
  buildSeconds: number;
}

async function buildSpecialised(
  recipe: string,
  board: string,
  cacheDir: string,
  directory: string,
  reporter: BuildReporter,
): Promise<SpecialisedImage> {
  const started = performance.now();
  const built = await buildUnikernel(
    { recipeFile: recipePath(recipe), board, cacheDir, stepsDir: join(directory, 'steps') },
    reporter,
  );
  const buildSeconds = (performance.now() - started) / 1000;
  if (!built.specialisedKernel) throw new Error(`${recipe} does not say kernel: specialised`);
  const bundleDir = join(directory, 'image');
  mkdirSync(bundleDir, { recursive: true });
  await exec('tar', ['-xf', built.bundle, '-C', bundleDir]);
  return {
    spec: built.launchSpec,
    bundleDir,
    kernelBuildSeconds: built.specialisedKernel.buildSeconds,
    kernelReused: built.specialisedKernel.reused,
    buildSeconds,
  };
}

async function measureBoots(
  image: LaunchSpec,
  bundleDir: string,
  baseline: LaunchSpec,
  baselineDir: string,
  boots: number,
  applicationLine: RegExp,
  specialised: SpecialisedImage | undefined,
): Promise<void> {
  const kvm = await detectAccelerator(image.architecture, { kernel: join(bundleDir, BUNDLE_FILES.kernel) });
  const accelerators: AcceleratorChoice[] = [{ accel: 'tcg', reason: 'TCG (software emulation)' }];
  if (kvm.accel === 'kvm') accelerators.push(kvm);
  else process.stdout.write(`KVM not usable: ${kvm.reason.replace(/^TCG \(software emulation\): /, '')}\n`);
  for (const accelerator of accelerators) {
    const measured = { image: [] as Boot[], baseline: [] as Boot[], specialised: [] as Boot[] };
    process.stdout.write(
      `\n${accelerator.accel.toUpperCase()}, ${boots} boots each, image and baseline alternating:\n`,
    );
    // Alternate the two, so load from elsewhere on the machine falls on both alike.
    for (let round = 1; round <= boots; round++) {
      const imageBoot = await bootOnce(bundleDir, image, accelerator, applicationLine);
      const baselineBoot = await bootOnce(baselineDir, baseline, accelerator, null);
      measured.image.push(imageBoot);
      measured.baseline.push(baselineBoot);
      const specialisedBoot = specialised
        ? await bootOnce(specialised.bundleDir, specialised.spec, accelerator, null)
        : undefined;
      if (specialisedBoot) measured.specialised.push(specialisedBoot);
      process.stdout.write(
        `  round ${round}: ${image.name} ready ${seconds(imageBoot.readyMs)}, baseline ${seconds(baselineBoot.readyMs)}` +
          `${specialisedBoot ? `, specialised ${seconds(specialisedBoot.readyMs)}` : ''}\n`,
      );
    }
    const lineTimes = measured.image.flatMap((boot) => (boot.lineMs === null ? [] : [boot.lineMs]));
    const lines = [
      `  ${image.name} ready (${describeReadiness(image)}): ${spread(measured.image.map((boot) => boot.readyMs))}`,
      lineTimes.length > 0
        ? `  ${image.name} console line /${applicationLine.source}/: ${spread(lineTimes)}`
        : `  ${image.name} never printed a line matching /${applicationLine.source}/ (--line)`,
      `  baseline, same kernel + busybox shell, udhcpc and httpd, to its HTTP answer and "${BASELINE_READY_LINE}": ${spread(measured.baseline.map((boot) => boot.readyMs))}`,
      // Each round's two boots ran back to back, so their difference carries less of the machine's load.
      `  ${image.name} ready minus baseline, per round: median ${signedSeconds(median(measured.image.map((boot, i) => boot.readyMs - (measured.baseline[i] as Boot).readyMs)))}`,
      `  qemu RSS once ready (-m ${image.memoryMiB} for both): ${image.name} ${mib(median(measured.image.map((boot) => boot.rssBytes)))}, ` +
        `baseline ${mib(median(measured.baseline.map((boot) => boot.rssBytes)))} (medians)`,
      ...(specialised
        ? [
            `  specialised: ${specialised.spec.name} (kernel: specialised) to its HTTP answer ${spread(measured.specialised.map((boot) => boot.readyMs))}; ` +
              `kernel ${kib(specialised.spec.sizes.kernel)} (${kib(gzippedSize(join(specialised.bundleDir, BUNDLE_FILES.kernel)))} gzipped; Debian's ${kib(image.sizes.kernel)}); qemu RSS at -m ${specialised.spec.memoryMiB} ${mib(median(measured.specialised.map((boot) => boot.rssBytes)))} (median); ` +
              `build: kernel ${specialised.kernelBuildSeconds.toFixed(0)} s ${specialised.kernelReused ? '(its first build; reused now, by configuration hash)' : '(compiled now)'}, image ${specialised.buildSeconds.toFixed(1)} s`,
          ]
        : []),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
}

/** One boot: qemu started, timed until ready by the spec, its RSS read, then stopped. */
async function bootOnce(
  bundleDir: string,
  spec: LaunchSpec,
  accelerator: AcceleratorChoice,
  applicationLine: RegExp | null,
): Promise<Boot> {
  const readyLine = spec.readiness?.consoleLine ? new RegExp(spec.readiness.consoleLine) : null;
  let readyLineAt: number | null = null;
  let applicationLineAt: number | null = null;
  const vm = new QemuVm({
    bundleDir,
    accelerator,
    onConsoleLine: (line) => {
      const now = performance.now();
      if (readyLineAt === null && readyLine?.test(line)) readyLineAt = now;
      if (applicationLineAt === null && applicationLine?.test(line)) applicationLineAt = now;
    },
  });
  const started = performance.now();
  try {
    await vm.start();
    const http = spec.readiness?.http;
    const url = http ? `http://127.0.0.1:${vm.hostPort(http.port)}${http.path}` : null;
    let httpAt: number | null = null;
    const deadline = started + READY_TIMEOUT_MS;
    while ((url && httpAt === null) || (readyLine && readyLineAt === null)) {
      const problem = vm.exit
        ? `exited before it was ready: ${vm.exit.description}`
        : performance.now() > deadline
          ? `was not ready after ${READY_TIMEOUT_MS / 1000} s`
          : null;
      if (problem)
        throw new Error(`${spec.name} ${problem}; its console ended:\n${vm.console.tail(20).join('\n')}`);
      if (url && httpAt === null && (await answers(url))) httpAt = performance.now();
      else await new Promise((resolve) => setTimeout(resolve, HTTP_POLL_MS));
    }
    return {
      lineMs: applicationLineAt === null ? null : applicationLineAt - started,
      readyMs: Math.max(httpAt ?? 0, readyLineAt ?? 0) - started,
      rssBytes: residentBytes(vm.pid as number),
    };
  } finally {
    await vm.stop({ graceMs: 10_000 });
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(HTTP_ATTEMPT_MS) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = status.match(/^VmRSS:\s+(\d+) kB$/m)?.[1];
  if (!kib) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib) * 1024;
}

/** A vmlinux is mostly the zero padding between its 2 MB-aligned segments: what it costs to move. */
function gzippedSize(file: string): number {
  return gzipSync(readFileSync(file)).length;
}

function readSpec(bundleDir: string): LaunchSpec {
  return launchSpecSchema.parse(JSON.parse(readFileSync(join(bundleDir, BUNDLE_FILES.launchSpec), 'utf8')));
}

function describeReadiness(spec: LaunchSpec): string {
  const checks = [];
  if (spec.readiness?.http)
    checks.push(`HTTP ${spec.readiness.http.path} on guest port ${spec.readiness.http.port}`);
  if (spec.readiness?.consoleLine) checks.push(`console /${spec.readiness.consoleLine}/`);
  return checks.join(' and ');
}

function median(numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function spread(times: number[]): string {
  return `median ${seconds(median(times))} (min ${seconds(Math.min(...times))}, max ${seconds(Math.max(...times))}, ${times.length} boots)`;
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const signedSeconds = (ms: number) => `${ms >= 0 ? '+' : '-'}${seconds(Math.abs(ms))}`;
const kib = (bytes: number) => `${(bytes / 1024).toFixed(0)} KiB`;
const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
