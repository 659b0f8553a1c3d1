import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { getVmBoard, type VmBoard } from '../../boards/board-catalogue.ts';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { BUNDLE_FILES, type LaunchSpec, launchSpecSchema } from '../../protocol/unikernel-image.ts';
import type { BuildReporter, BuiltFile } from '../build-runner.ts';
import {
  debianComponent,
  fetchWithProgress,
  NEVER_INSTALLED,
  openDebianArchive,
  pickKernelPackage,
} from '../debian/build-archive.ts';
import type { ArchivePackage, DebianArchive, ResolvedPackage } from '../debian/debian-archive.repository.ts';
import { kernelVersionOf, type ModuleClosure, moduleClosure } from '../debian/kernel-modules.ts';
import { compressImage } from '../disk/compress-image.ts';
import { writeCpioNewc } from '../disk/cpio-newc.ts';
import { ImageTools } from '../disk/image-tools.repository.ts';
import { CrossCompiler } from '../native/cross-compiler.repository.ts';
import type { UnikernelRecipe } from '../recipe/unikernel-recipe.ts';
import { loadRecipeOfKind } from '../recipe/recipe.ts';
import { builderSourcesHash, hashOf } from '../steps/input-hash.ts';
import { imageSbomHeader, type SbomComponent, writeSbom } from '../steps/sbom.ts';
import { stagedOutput } from '../steps/staged-output.ts';
import { assembleUnikernelInitramfs } from './assemble-unikernel-initramfs.ts';
import { buildSpecialisedKernel, type SpecialisedKernel } from './kernel-build.ts';
import { type KernelPlan, planKernelConfig } from './kernel-config.ts';
import {
  buildApplication,
  buildPreInit,
  recipeFingerprint,
  type UnikernelApplication,
} from './unikernel-application.ts';
import { launchSpecFor, writeUnikernelBundle } from './unikernel-bundle.ts';

/** What a Node application needs besides the runtime: the C and C++ libraries it links against. */
const NODE_LIBRARY_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'];
/** Beside the bundle in its output folder: what the zstd initramfs unpacks to, for the log and the result. */
const UNCOMPRESSED_INITRAMFS_SIZE = 'uncompressed-initramfs-size';
/** Debian's kernel source, which a specialised kernel is compiled from. */
const LINUX_SOURCE_PACKAGE = 'linux-source-6.1';

export interface UnikernelBuildInput {
  recipeFile: string;
  /** A VM board: vm-x86_64 or vm-arm64. */
  board: string;
  cacheDir: string;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH, else the Debian Release date. */
  sourceDateEpoch?: number;
  /** Where finished steps are kept; default `<cacheDir>/image-steps`. */
  stepsDir?: string;
  /** Where specialised kernels are kept by configuration hash; default `<cacheDir>/kernels`. */
  kernelsDir?: string;
}

export interface UnikernelBuildResult {
  files: BuiltFile[];
  /** Hash of every input: recipe and its sources, board, kernel, Node, builder code, epoch. */
  inputsHash: string;
  /** The deployable tar: launch.json, kernel, initramfs.img, firecracker.json. */
  bundle: string;
  sbom: string;
  launchSpec: LaunchSpec;
  sizes: { kernel: number; initramfs: number; initramfsUncompressed: number; bundle: number };
  reusedSteps: string[];
  /** For `kernel: specialised`: the compiled kernel and how long its first build took. */
  specialisedKernel?: SpecialisedKernel;
}

/** What every step of one unikernel build works with. */
interface UnikernelBuild {
  recipe: UnikernelRecipe;
  board: VmBoard;
  archive: DebianArchive;
  /** SOURCE_DATE_EPOCH: every timestamp in the bundle. */
  epoch: number;
  /** This build's scratch folder, removed at the end. */
  work: string;
  reporter: BuildReporter;
}

/** Debian's VM kernel (or the kernel source a specialised kernel is compiled from), and the libraries a Node application needs. */
interface UnikernelPackages {
  kernel: ResolvedPackage | ArchivePackage;
  libraries: ResolvedPackage[];
  all: Array<ResolvedPackage | ArchivePackage>;
}

/** What goes into the initramfs and the bundle. */
interface UnikernelParts {
  preInit: string;
  application: UnikernelApplication;
  kernel: UnikernelKernel;
}

/** The kernel, and the modules the VM and the recipe need in load order (none for a specialised one). */
interface UnikernelKernel {
  file: string;
  modulesRoot: string;
  modules: ModuleClosure;
  specialised?: SpecialisedKernel;
}

/** The finished files of a unikernel build, in a folder named by its inputs' hash. */
interface UnikernelOutputs {
  directory: string;
  bundle: string;
  sbom: string;
}

/**
 * Builds a unikernel-style image: Debian's small VM kernel, and an initramfs holding only the
 * pre-init, the modules the VM needs and the application (a static C program, or Node with one
 * bundled file), which the pre-init execs as PID 1. The result is one tar with a launch spec for
 * qemu and one for Firecracker. Steps are cached by the hash of their inputs; the same inputs
 * give the same bytes.
 */
export async function buildUnikernel(
  input: UnikernelBuildInput,
  reporter: BuildReporter,
): Promise<UnikernelBuildResult> {
  const recipe = loadRecipeOfKind(input.recipeFile, 'unikernel');
  const board = getVmBoard(input.board);
  const stepsDir = input.stepsDir ?? join(input.cacheDir, 'image-steps');
  // Missing tools are said before anything is downloaded.
  const compiler = new CrossCompiler(undefined, board.architecture);
  await compiler.require();
  await new ImageTools().require('zstd');
  await mkdir(stepsDir, { recursive: true });
  const work = await mkdtemp(join(input.cacheDir, 'work-'));
  try {
    reporter.progress('reading the Debian archive index', 2);
    const base = { ...recipe.base, components: ['main'] };
    const { archive, epoch } = await openDebianArchive(base, board.architecture, input, reporter);
    const build: UnikernelBuild = { recipe, board, archive, epoch, work, reporter };
    // Planned before anything is fetched: a device the board lacks is said at once.
    const kernelPlan = recipe.kernel.config === 'specialised' ? planKernelConfig(recipe, board) : undefined;

    const packages = resolveUnikernelPackages(build, kernelPlan);
    reporter.progress('fetching packages', 5);
    await fetchWithProgress(archive, packages.all, reporter, 5, 35);

    reporter.progress('compiling the pre-init and the application', 38);
    const preInit = await buildPreInit(compiler, input.cacheDir);
    const { signal } = reporter;
    const application = await buildApplication(recipe, board, {
      work,
      cacheDir: input.cacheDir,
      compiler,
      signal,
    });
    reporter.log(`application: ${application.describe}`);
    const kernel = kernelPlan
      ? await compileKernel(
          build,
          kernelPlan,
          packages.kernel,
          input.kernelsDir ?? join(input.cacheDir, 'kernels'),
        )
      : await unpackVmKernel(build, packages.kernel);
    const parts: UnikernelParts = { preInit, application, kernel };
    const inputsHash = await unikernelInputsHash(build, packages, parts);
    reporter.log(`inputs ${inputsHash.slice(0, 16)}`);

    const outputs = unikernelOutputs(stepsDir, recipe, board, inputsHash);
    const reused = await stagedOutput(outputs.directory, async (staging) => {
      const initramfs = await writeInitramfs(
        build,
        parts,
        await unpackAll(build, packages.libraries),
        staging,
      );
      reporter.progress('writing the bundle', 90);
      const sizes = { kernel: (await stat(kernel.file)).size, initramfs: (await stat(initramfs)).size };
      await writeUnikernelBundle(staging, {
        spec: launchSpecFor(recipe, board, sizes),
        kernel: kernel.file,
        initramfs,
        bundleName: basename(outputs.bundle),
        epoch,
      });
      await writeUnikernelSbom(build, packages, parts, inputsHash, join(staging, basename(outputs.sbom)));
    });
    const result = await summarise(build, inputsHash, outputs, reused ? ['initramfs', 'bundle', 'sbom'] : []);
    return kernel.specialised ? { ...result, specialisedKernel: kernel.specialised } : result;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The VM kernel (or the kernel source), and for a Node application the libraries it links against, logged. */
function resolveUnikernelPackages(
  build: UnikernelBuild,
  kernelPlan: KernelPlan | undefined,
): UnikernelPackages {
  const { archive, recipe, board } = build;
  const kernel = kernelPlan ? requireLinuxSource(archive) : pickKernelPackage(archive, board);
  const libraries = recipe.app.node
    ? archive.resolve(NODE_LIBRARY_PACKAGES, { exclude: NEVER_INSTALLED })
    : [];
  const all = [kernel, ...libraries];
  build.reporter.log(`packages: ${all.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ')}`);
  return { kernel, libraries, all };
}

/** The kernel package unpacked, and the modules the VM board and the recipe name with what they need. */
async function unpackVmKernel(
  build: UnikernelBuild,
  kernelPackage: ResolvedPackage | ArchivePackage,
): Promise<UnikernelKernel> {
  const { board, recipe, reporter } = build;
  const root = (await build.archive.unpack(kernelPackage, { signal: reporter.signal })).root;
  const layout = kernelVersionOf(root);
  const modulesRoot = join(root, layout.modulesDir);
  const modules = moduleClosure(modulesRoot, [...board.kernel.modules, ...recipe.kernel.modules]);
  reporter.log(`modules: ${modules.files.length} files; built in: ${modules.builtin.join(', ') || '-'}`);
  return { file: join(root, layout.kernel), modulesRoot, modules };
}

/** Debian's kernel source package, on its own: its dependencies are tools of a build host, not of the image. */
function requireLinuxSource(archive: DebianArchive): ArchivePackage {
  const pkg = archive.find(LINUX_SOURCE_PACKAGE);
  if (!pkg) {
    throw new BoardfleetError(
      'archive-package-unknown',
      `a specialised kernel is compiled from ${LINUX_SOURCE_PACKAGE}, which ${archive.mirror} ${archive.suite} does not have`,
    );
  }
  return pkg;
}

/** A specialised kernel compiled from the source package for the plan (or reused by its configuration's hash). */
async function compileKernel(
  build: UnikernelBuild,
  plan: KernelPlan,
  sourcePackage: ArchivePackage | ResolvedPackage,
  kernelsDir: string,
): Promise<UnikernelKernel> {
  const { reporter } = build;
  const { root } = await build.archive.unpack(sourcePackage, { signal: reporter.signal });
  const specialised = await buildSpecialisedKernel({
    plan,
    sourceTarball: join(root, 'usr/src', `${LINUX_SOURCE_PACKAGE}.tar.xz`),
    source: { name: sourcePackage.name, version: sourcePackage.version, sha256: sourcePackage.sha256 },
    target: build.board.architecture,
    epoch: build.epoch,
    kernelsDir,
    work: await mkdtemp(join(build.work, 'kernel-')),
    reporter,
  });
  return {
    file: specialised.file,
    modulesRoot: '',
    modules: { files: [], builtin: [], modulesDep: '' },
    specialised,
  };
}

/** Every input of the bundle: the builder's code, the epoch, the board, the recipe, the packages and programs. */
async function unikernelInputsHash(
  build: UnikernelBuild,
  packages: UnikernelPackages,
  parts: UnikernelParts,
): Promise<string> {
  return hashOf({
    builder: builderSourcesHash(),
    epoch: build.epoch,
    board: build.board,
    recipe: recipeFingerprint(build.recipe),
    kernel: parts.kernel.specialised?.configHash ?? packages.kernel.sha256,
    libraries: packages.libraries.map((pkg) => pkg.sha256),
    preInit: await sha256File(parts.preInit),
    application: parts.application.fingerprint,
  });
}

async function unpackAll(
  build: UnikernelBuild,
  packages: ResolvedPackage[],
): Promise<Array<{ name: string; root: string }>> {
  const { signal } = build.reporter;
  return Promise.all(
    packages.map(async (pkg) => ({
      name: pkg.name,
      root: (await build.archive.unpack(pkg, { signal })).root,
    })),
  );
}

/**
 * The initramfs: the pre-init, the modules, the application and the libraries a Node application
 * needs, as a zstd newc cpio in `directory`; beside it, its size unpacked. Returns its path.
 */
async function writeInitramfs(
  build: UnikernelBuild,
  parts: UnikernelParts,
  libraryTrees: Array<{ name: string; root: string }>,
  directory: string,
): Promise<string> {
  const { reporter, work, epoch } = build;
  reporter.progress('assembling the initramfs', 60);
  const tree = join(work, 'initramfs');
  await assembleUnikernelInitramfs({
    dir: tree,
    board: build.board,
    recipe: build.recipe,
    preInit: parts.preInit,
    modulesRoot: parts.kernel.modulesRoot,
    moduleFiles: parts.kernel.modules.files,
    application: parts.application,
    packageTrees: libraryTrees,
  });
  const cpio = join(work, 'initramfs.cpio');
  await writeCpioNewc(tree, cpio, {
    epoch,
    compression: 'none',
    // The kernel opens /dev/console for PID 1's output before anything could mount devtmpfs.
    charDevices: [{ path: 'dev/console', major: 5, minor: 1 }],
  });
  reporter.progress('compressing the initramfs', 80);
  const initramfs = join(directory, BUNDLE_FILES.initramfs);
  // zstd: the kernel unpacks it at every boot, and zstd unpacks several times faster than gzip.
  await compressImage(cpio, initramfs, { format: 'zstd' });
  await writeFile(join(directory, UNCOMPRESSED_INITRAMFS_SIZE), String((await stat(cpio)).size));
  return initramfs;
}

/** The kernel and libraries from Debian and the application (with Node and its bundle), as SPDX. */
async function writeUnikernelSbom(
  build: UnikernelBuild,
  packages: UnikernelPackages,
  { application, kernel }: UnikernelParts,
  inputsHash: string,
  out: string,
): Promise<void> {
  const { archive, board } = build;
  build.reporter.progress('writing the SBOM', 95);
  await writeSbom(out, {
    ...imageSbomHeader(build, inputsHash),
    components: [
      ...packages.all.map((pkg) => debianComponent(pkg, archive.mirror, board.architecture)),
      ...(kernel.specialised ? [specialisedKernelComponent(kernel.specialised, packages.kernel)] : []),
      ...application.sbom,
    ],
  });
}

/** The kernel compiled from the source package, with every Kconfig option added to tinyconfig and why. */
function specialisedKernelComponent(
  kernel: SpecialisedKernel,
  source: ResolvedPackage | ArchivePackage,
): SbomComponent {
  return {
    name: 'linux-specialised',
    version: source.version,
    purl: `pkg:generic/linux-specialised@${encodeURIComponent(source.version)}?config=${kernel.configHash.slice(0, 16)}`,
    downloadLocation: 'NOASSERTION',
    sha256: kernel.sha256,
    source: source.name,
    supplier: 'NOASSERTION',
    comment: `tinyconfig plus ${kernel.options.map((option) => `CONFIG_${option.name}=${option.value} (${option.reason})`).join('; ')}`,
  };
}

function unikernelOutputs(
  stepsDir: string,
  recipe: UnikernelRecipe,
  board: VmBoard,
  inputsHash: string,
): UnikernelOutputs {
  const directory = join(stepsDir, `unikernel-${inputsHash}`);
  const baseName = `${recipe.name}-${recipe.version}-${board.id}`;
  return {
    directory,
    bundle: join(directory, `${baseName}.unikernel.tar`),
    sbom: join(directory, `${baseName}.spdx.json`),
  };
}

/** Reads the finished (or reused) output back for the log and the result. */
async function summarise(
  build: UnikernelBuild,
  inputsHash: string,
  outputs: UnikernelOutputs,
  reused: string[],
): Promise<UnikernelBuildResult> {
  const { recipe, board, reporter } = build;
  const launchSpec = launchSpecSchema.parse(
    JSON.parse(readFileSync(join(outputs.directory, BUNDLE_FILES.launchSpec), 'utf8')),
  );
  const bundleSize = (await stat(outputs.bundle)).size;
  const initramfsUncompressed = Number(
    readFileSync(join(outputs.directory, UNCOMPRESSED_INITRAMFS_SIZE), 'utf8'),
  );
  reporter.log(
    `kernel ${launchSpec.sizes.kernel} bytes, initramfs ${launchSpec.sizes.initramfs} bytes ` +
      `(${initramfsUncompressed} unpacked), bundle ${bundleSize} bytes, sha256 ${(await sha256File(outputs.bundle)).slice(0, 16)}`,
  );
  if (reused.length > 0) reporter.log(`reused cached steps: ${reused.join(', ')}`);
  reporter.progress('done', 98);
  // The VM board and every host board that can run it: a release targets the hosts' agents.
  const boards = [board.id, ...board.hostBoards];
  const artifactName = `${recipe.name}-${board.id}`;
  const file = (role: BuiltFile['role'], path: string, name: string, kind: BuiltFile['kind']) => ({
    role,
    path,
    name,
    version: recipe.version,
    kind,
    boards,
  });
  return {
    files: [
      file('unikernel', outputs.bundle, artifactName, 'unikernel'),
      file('sbom', outputs.sbom, `${artifactName}-sbom`, 'sbom'),
    ],
    inputsHash,
    bundle: outputs.bundle,
    sbom: outputs.sbom,
    launchSpec,
    sizes: {
      kernel: launchSpec.sizes.kernel,
      initramfs: launchSpec.sizes.initramfs,
      initramfsUncompressed,
      bundle: bundleSize,
    },
    reusedSteps: reused,
  };
}
