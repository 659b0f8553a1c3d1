import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type AnyBoard, getLinuxBoard, getVmBoard, type LinuxBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { SlotDevices } from '../../protocol/linux-ab-layout.ts';
import { bundleAgent } from '../agent-runtime/agent-bundle.ts';
import { fetchNodeRuntime } from '../agent-runtime/node-runtime.repository.ts';
import type { BuildReporter, BuildRequest, BuiltFile, BuildRunner } from '../build-runner.ts';
import {
  type ArchivePackage,
  DebianArchive,
  type ResolvedPackage,
} from '../debian/debian-archive.repository.ts';
import { kernelVersionOf, moduleClosure } from '../debian/kernel-modules.ts';
import { compressImage } from '../disk/compress-image.ts';
import { writeCpioNewc } from '../disk/cpio-newc.ts';
import { type ImageTool, ImageTools } from '../disk/image-tools.repository.ts';
import { FIRST_PARTITION_OFFSET, makeDiskImage } from '../disk/disk-image.ts';
import { makeExt4Partition } from '../disk/ext4-partition.ts';
import { makeFatPartition } from '../disk/fat-partition.ts';
import { makeSquashfs } from '../disk/squashfs.ts';
import { describeUpdatePayload, writeUpdatePayload } from '../disk/update-payload.ts';
import { type ImageRecipe, loadRecipe, recipePath } from '../recipe/linux-image-recipe.ts';
import { assembleBootFiles, assembleSlotFiles, cmdlineTemplate } from './rootfs/assemble-boot-files.ts';
import { assembleInitramfs } from './rootfs/assemble-initramfs.ts';
import { assembleRootfs, rootfsPackages } from './rootfs/assemble-rootfs.ts';
import { buildRebootHelper } from './rootfs/reboot-helper/reboot-helper.ts';
import { buildUnikernel } from '../unikernel/unikernel-build.ts';
import { isUnikernelRecipeFile, loadUnikernelRecipe } from '../recipe/unikernel-recipe.ts';
import { bundleComponents, nodeRuntimeComponent, type SbomComponent, spdxDocument } from '../steps/sbom.ts';

const MIB = 1024 * 1024;
const BUILD_TOOLS: ImageTool[] = [
  'mksquashfs',
  'mkfs.vfat',
  'mcopy',
  'mmd',
  'sfdisk',
  'mke2fs',
  'debugfs',
  'zstd',
];
const BUILDER_DIRECTORY = fileURLToPath(new URL('../', import.meta.url));
const PACKAGE_JSON = fileURLToPath(new URL('../../package.json', import.meta.url));

/**
 * What never goes into an image although packages name it: the package manager and its
 * configuration system (nothing is installed on the device), and what only maintainer scripts use.
 */
export const NEVER_INSTALLED = ['debconf', 'cdebconf', 'dpkg', 'perl-base', 'install-info', 'libc-bin'];
/** The kernel package's dependencies serve a conventional initramfs and dpkg hooks; ours is built here. */
const KERNEL_DEPENDENCIES_NOT_NEEDED = ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool'];

export interface ImageBuildOptions {
  recipesDir: string;
  cacheDir: string;
}

/**
 * Checks a build request before it is queued: a recipe that loads, and a board of its kind (a
 * Linux board for an image recipe, a virtual machine for a unikernel recipe).
 */
export function validateBuildRequest(recipesDir: string, request: BuildRequest): void {
  const file = recipeFile(recipesDir, request.recipe);
  if (isUnikernelRecipeFile(file)) {
    loadUnikernelRecipe(file);
    getVmBoard(request.board);
    return;
  }
  loadRecipe(file);
  getLinuxBoard(request.board);
}

function recipeFile(recipesDir: string, name: string): string {
  const file = recipePath(name, recipesDir);
  if (!existsSync(file)) {
    const known = readdirSync(recipesDir)
      .filter((entry) => entry.endsWith('.yaml'))
      .map((entry) => entry.slice(0, -'.yaml'.length));
    throw new BoardfleetError(
      'invalid-request',
      `no recipe "${name}" in ${recipesDir}; recipes: ${known.join(', ') || '(none)'}`,
    );
  }
  return file;
}

/** The build queue's runner for Linux image and unikernel recipes. */
export function imageBuildRunner(options: ImageBuildOptions): BuildRunner {
  return async (request, reporter) => {
    const file = recipeFile(options.recipesDir, request.recipe);
    const input = { recipeFile: file, board: request.board, cacheDir: options.cacheDir };
    if (isUnikernelRecipeFile(file)) return (await buildUnikernel(input, reporter)).files;
    return buildImage(input, reporter);
  };
}

export interface ImageBuildInput {
  recipeFile: string;
  board: string;
  cacheDir: string;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH, else the Debian Release date. */
  sourceDateEpoch?: number;
  /** Where finished steps are kept; default `<cacheDir>/image-steps`. Two step dirs build twice. */
  stepsDir?: string;
}

export interface ImageBuildResult {
  files: BuiltFile[];
  /** Hash of every input: recipe, board file, packages, Node, agent, builder code, epoch. */
  inputsHash: string;
  diskImage: string;
  diskImageCompressed: string;
  updatePayload: string;
  sbom: string;
  reusedSteps: string[];
}

/**
 * Builds a Linux image as data: fetch and verify Debian packages, assemble the root, the
 * initramfs and the boot FAT as plain folders, then make the filesystems and the disk with
 * unprivileged tools. Each step is cached under the hash of its inputs, so an unchanged step is
 * reused and a warm build of an unchanged recipe only checks hashes.
 */
export async function buildImage(input: ImageBuildInput, reporter: BuildReporter): Promise<BuiltFile[]> {
  return (await buildImageWithDetails(input, reporter)).files;
}

export async function buildImageWithDetails(
  input: ImageBuildInput,
  reporter: BuildReporter,
): Promise<ImageBuildResult> {
  const { signal } = reporter;
  const recipe = loadRecipe(input.recipeFile);
  const board = getLinuxBoard(input.board);
  const stepsDir = input.stepsDir ?? join(input.cacheDir, 'image-steps');
  const reused: string[] = [];
  // A missing tool is said before hundreds of megabytes are downloaded, not after.
  const tools = new ImageTools();
  for (const tool of BUILD_TOOLS) await tools.require(tool);
  await mkdir(stepsDir, { recursive: true });
  const work = await mkdtemp(join(input.cacheDir, 'work-'));
  let staging: string | undefined;
  try {
    reporter.progress('reading the Debian archive index', 2);
    const { archive, epoch } = await openDebianArchive(recipe.base, board.architecture, input, reporter);

    const rootPackages = archive.resolve(rootfsPackages(recipe), { exclude: NEVER_INSTALLED });
    const kernelPackage = pickKernelPackage(archive, board);
    const firmwarePackage = board.firmware ? requirePackage(archive, board.firmware.package, board) : null;
    const allPackages = [...rootPackages, kernelPackage, ...(firmwarePackage ? [firmwarePackage] : [])];
    reporter.log(`packages: ${allPackages.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ')}`);

    reporter.progress('fetching packages', 5);
    await fetchWithProgress(archive, allPackages, reporter, 5, 35);

    reporter.progress('fetching the Node runtime and bundling the agent', 36);
    const node = recipe.agent.include
      ? await fetchNodeRuntime({
          architecture: board.architecture,
          versionRange: recipe.agent.node,
          cacheDir: input.cacheDir,
          signal,
        })
      : null;
    const agent = recipe.agent.include
      ? await bundleAgent({
          outFile: join(work, 'agent.mjs'),
          cacheDir: join(input.cacheDir, 'agent-bundle'),
        })
      : null;
    const rebootHelper = await buildRebootHelper(input.cacheDir);
    if (node) reporter.log(`Node ${node.version} (${node.packageName}, sha256 ${node.sha256.slice(0, 12)})`);
    if (agent) reporter.log(`agent bundle ${agent.size} bytes, sha256 ${agent.sha256.slice(0, 12)}`);

    const builderHash = builderSourcesHash();
    const commonInputs = {
      builderHash,
      epoch,
      board: boardFingerprint(board),
      recipe: recipeFingerprint(recipe),
    };
    const rootfsKey = hashOf({
      ...commonInputs,
      packages: rootPackages.map((pkg) => pkg.sha256),
      node: node?.sha256 ?? null,
      agent: agent?.sha256 ?? null,
      rebootHelper: sha256(readFileSync(rebootHelper)),
    });
    const initramfsKey = hashOf({
      ...commonInputs,
      kernel: kernelPackage.sha256,
      busybox: rootPackages.find((pkg) => pkg.name === 'busybox-static')?.sha256,
    });
    const inputsHash = hashOf({ rootfsKey, initramfsKey, firmware: firmwarePackage?.sha256 ?? null });
    reporter.log(`inputs ${inputsHash.slice(0, 16)}`);

    // Unpacked trees are cached by the package's sha256: the 350 MB kernel is unpacked once per machine.
    const extract = async (pkg: ResolvedPackage | ArchivePackage): Promise<string> =>
      (await archive.unpack(pkg, { signal })).root;

    const rootfsImage = await cachedStep(stepsDir, `rootfs-${rootfsKey}.squashfs`, reused, async (out) => {
      reporter.progress('assembling the root filesystem', 45);
      const packageTrees = [];
      for (const pkg of rootPackages) packageTrees.push({ name: pkg.name, root: await extract(pkg) });
      const tree = join(work, 'rootfs');
      const assembled = await assembleRootfs({
        dir: tree,
        board,
        recipe,
        packageTrees,
        nodeBinary: node?.binary ?? null,
        agentBundle: agent?.file ?? null,
        rebootHelper,
        slotDevices: board.partitions as SlotDevices,
      });
      reporter.log(
        `root: ${assembled.libraries.length} libraries, ${assembled.applets.length} busybox applets`,
      );
      reporter.progress('making the squashfs root', 55);
      await makeSquashfs(tree, out, { epoch, compression: recipe.squashfs.compression });
    });

    const kernelDir = await extract(kernelPackage);
    const kernel = kernelVersionOf(kernelDir);
    const initramfsImage = await cachedStep(
      stepsDir,
      `initramfs-${initramfsKey}.img`,
      reused,
      async (out) => {
        reporter.progress('assembling the initramfs', 65);
        const closure = moduleClosure(join(kernelDir, kernel.modulesDir), board.kernel.modules);
        reporter.log(
          `initramfs modules: ${closure.files.length} files; built in: ${closure.builtin.join(', ') || '-'}`,
        );
        const tree = join(work, 'initramfs');
        const busybox = join(
          await extract(rootPackages.find((pkg) => pkg.name === 'busybox-static')!),
          'bin',
          'busybox',
        );
        await assembleInitramfs({
          dir: tree,
          board,
          busyboxStatic: busybox,
          modulesRoot: join(kernelDir, kernel.modulesDir),
          moduleFiles: closure.files,
        });
        await writeCpioNewc(tree, out, { epoch });
      },
    );

    const slotFiles = {
      kernel: join(kernelDir, kernel.kernel),
      initramfs: initramfsImage,
      dtbs: board.kernel.deviceTrees.map((tree) => join(kernelDir, kernel.dtbDir ?? 'usr/lib', tree)),
      cmdline: cmdlineTemplate(board, recipe),
    };
    const outputDir = join(stepsDir, `image-${inputsHash}`);
    const diskImage = join(outputDir, `${recipe.name}-${recipe.version}-${board.id}.img`);
    const diskImageCompressed = `${diskImage}.zst`;
    const updatePayload = join(outputDir, `${recipe.name}-${recipe.version}-${board.id}.payload.tar`);
    const sbomFile = join(outputDir, `${recipe.name}-${recipe.version}-${board.id}.spdx.json`);
    if (isCompleteOutput(outputDir)) {
      reused.push('disk image', 'update payload', 'sbom');
    } else {
      // Written under a name of its own and renamed whole: another build of the same inputs
      // (a second queue slot, another process sharing the steps dir) never sees it half made.
      staging = `${outputDir}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
      await mkdir(staging, { recursive: true });
      const staged = (file: string) => join(staging!, relative(outputDir, file));
      reporter.progress('assembling the boot partition', 72);
      const firmwareRoot = firmwarePackage ? await extract(firmwarePackage) : null;
      const bootTree = join(work, 'boot');
      await assembleBootFiles({
        dir: bootTree,
        board,
        firmwareRoot,
        slots: { a: slotFiles },
        committedSlot: 'a',
      });
      const diskId = Number.parseInt(inputsHash.slice(0, 8), 16) || 1;
      reporter.progress('making the boot, data and disk images', 78);
      const bootPartition = join(work, 'boot.fat');
      const fat = await makeFatPartition(bootTree, bootPartition, {
        sizeBytes: recipe.partitions.boot * MIB,
        label: 'BOOT',
        volumeId: diskId,
        epoch,
        hiddenSectors: FIRST_PARTITION_OFFSET / 512,
      });
      const dataPartition = join(work, 'data.ext4');
      await makeExt4Partition(null, dataPartition, {
        sizeBytes: recipe.partitions.data * MIB,
        label: 'data',
        uuid: uuidFrom(inputsHash),
        epoch,
      });
      const emptySlot = join(work, 'empty-slot');
      await writeFile(emptySlot, '');
      const disk = await makeDiskImage({
        out: staged(diskImage),
        diskId,
        partitions: [
          {
            file: bootPartition,
            sizeBytes: recipe.partitions.boot * MIB,
            type: fat.fatBits === 32 ? 'fat32' : 'fat16',
          },
          { file: rootfsImage, sizeBytes: recipe.partitions.root * MIB, type: 'linux' },
          // Slot B starts empty: the first update writes it.
          { file: emptySlot, sizeBytes: recipe.partitions.root * MIB, type: 'linux' },
          { file: dataPartition, sizeBytes: recipe.partitions.data * MIB, type: 'linux' },
        ],
      });
      reporter.log(`disk image ${disk.sizeBytes} bytes, sha256 ${disk.sha256}`);
      reporter.progress('compressing the disk image', 85);
      // zstd -10: a few seconds, 2 % bigger than xz -6, which takes minutes; Raspberry Pi Imager reads both.
      await compressImage(staged(diskImage), staged(diskImageCompressed), { format: 'zstd' });

      reporter.progress('writing the update payload', 93);
      const payloadBoot = join(work, 'payload-boot');
      await assembleSlotFiles({ dir: payloadBoot, board, files: slotFiles, cmdline: slotFiles.cmdline });
      const manifest = await describeUpdatePayload({
        board: board.id,
        version: recipe.version,
        rootfsFile: rootfsImage,
        bootDir: payloadBoot,
      });
      await writeUpdatePayload({
        out: staged(updatePayload),
        manifest,
        rootfsFile: rootfsImage,
        bootDir: payloadBoot,
        epoch,
      });

      reporter.progress('writing the SBOM', 96);
      const components: SbomComponent[] = [
        ...allPackages.map((pkg) => debianComponent(pkg, archive.mirror, board.architecture)),
        ...(node ? [nodeRuntimeComponent(node)] : []),
        ...(agent
          ? bundleComponents({
              name: 'boardfleet-agent',
              version: packageVersion(),
              sha256: agent.sha256,
              supplier: 'Organization: Boardfleet',
              packages: agent.packages,
            })
          : []),
      ];
      const document = spdxDocument({
        imageName: recipe.name,
        imageVersion: recipe.version,
        board: board.id,
        buildId: inputsHash,
        epochSeconds: epoch,
        toolVersion: packageVersion(),
        components,
      });
      await writeFile(staged(sbomFile), `${JSON.stringify(document, null, 2)}\n`);
      await publishStagedOutput(staging, outputDir);
    }
    if (reused.length > 0) reporter.log(`reused cached steps: ${reused.join(', ')}`);
    reporter.progress('done', 98);
    const boards = [board.id];
    // One recipe version is built for several boards: each board's build is its own artifact.
    const artifactName = `${recipe.name}-${board.id}`;
    return {
      files: [
        {
          role: 'update-payload',
          path: updatePayload,
          name: artifactName,
          version: recipe.version,
          kind: 'linux-image',
          boards,
        },
        {
          role: 'disk-image',
          path: diskImageCompressed,
          name: `${artifactName}-disk`,
          version: recipe.version,
          kind: 'disk-image',
          boards,
        },
        {
          role: 'sbom',
          path: sbomFile,
          name: `${artifactName}-sbom`,
          version: recipe.version,
          kind: 'sbom',
          boards,
        },
      ],
      inputsHash,
      diskImage,
      diskImageCompressed,
      updatePayload,
      sbom: sbomFile,
      reusedSteps: reused,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
    if (staging) await rm(staging, { recursive: true, force: true });
  }
}

/**
 * Debian's archive for a build: the signed index loaded (refreshed at most every 6 hours) and the
 * build's SOURCE_DATE_EPOCH (given, from the environment, else the Release file's date), both logged.
 */
export async function openDebianArchive(
  base: { mirror: string; suite: string; components: string[] },
  architecture: string,
  input: { cacheDir: string; sourceDateEpoch?: number },
  reporter: BuildReporter,
): Promise<{ archive: DebianArchive; epoch: number }> {
  const archive = new DebianArchive({
    mirror: base.mirror,
    suite: base.suite,
    components: base.components,
    architecture,
    cacheDir: join(input.cacheDir, 'debian'),
    // A Release file is signed for a week; asking again within hours changes nothing but the inputs.
    maxIndexAgeSeconds: 6 * 3600,
    onProgress: downloadLogger(reporter),
  });
  const index = await archive.loadIndex({ signal: reporter.signal });
  reporter.log(`Debian ${base.suite} index ${index.indexId.slice(0, 12)} (${index.packages} packages)`);
  const epoch =
    input.sourceDateEpoch ?? epochFromEnvironment() ?? Math.floor((index.date?.getTime() ?? 0) / 1000);
  if (!(epoch > 0))
    throw new BoardfleetError('build-failed', 'no SOURCE_DATE_EPOCH and no Release date to use instead');
  reporter.log(`SOURCE_DATE_EPOCH=${epoch}`);
  return { archive, epoch };
}

/** Debian's kernel metapackage (`linux-image-arm64`) names the versioned kernel package it stands for. */
export function pickKernelPackage(
  archive: DebianArchive,
  board: Pick<LinuxBoard, 'id'> & { kernel: { package: string } },
): ResolvedPackage {
  const closure = archive.resolve([board.kernel.package], { exclude: KERNEL_DEPENDENCIES_NOT_NEEDED });
  const kernel = closure.find((pkg) => /^linux-image-\d/.test(pkg.name));
  if (!kernel) {
    throw new BoardfleetError(
      'build-failed',
      `${board.kernel.package} (board ${board.id}) does not lead to a versioned linux-image package: ${closure.map((pkg) => pkg.name).join(', ')}`,
    );
  }
  return kernel;
}

function requirePackage(archive: DebianArchive, name: string, board: AnyBoard): ArchivePackage {
  const pkg = archive.find(name);
  if (!pkg) {
    throw new BoardfleetError(
      'archive-package-unknown',
      `board ${board.id} needs the Debian package ${name}, which ${archive.mirror} ${archive.suite} (${archive.components.join(', ')}) does not have`,
    );
  }
  return pkg;
}

export async function fetchWithProgress(
  archive: DebianArchive,
  packages: Array<ResolvedPackage | ArchivePackage>,
  reporter: BuildReporter,
  fromPercent: number,
  toPercent: number,
): Promise<void> {
  const total = packages.reduce((sum, pkg) => sum + pkg.size, 0);
  let done = 0;
  for (const pkg of packages) {
    await archive.fetch(pkg, { signal: reporter.signal });
    done += pkg.size;
    reporter.progress(
      'fetching packages',
      fromPercent + ((toPercent - fromPercent) * done) / Math.max(total, 1),
    );
  }
}

export function downloadLogger(reporter: BuildReporter) {
  const started = new Set<string>();
  return (
    event: Parameters<NonNullable<ConstructorParameters<typeof DebianArchive>[0]>['onProgress'] & object>[0],
  ) => {
    if (event.type === 'download' && !started.has(event.url)) {
      started.add(event.url);
      reporter.log(`downloading ${event.what} (${event.url})`);
    } else if (event.type === 'cache-corrupt') {
      reporter.log(`cached ${event.what} failed its check; downloading it again`);
    }
  };
}

/** Whether a build's output folder was finished (by {@link publishStagedOutput}). */
export const isCompleteOutput = (outputDir: string): boolean => existsSync(join(outputDir, 'complete'));

/**
 * Makes a fully written staging folder the build's output folder, whole: marked `complete` and
 * renamed, so another build of the same inputs (a second queue slot, another process sharing the
 * steps dir) never sees it half made.
 */
export async function publishStagedOutput(staging: string, outputDir: string): Promise<void> {
  await writeFile(join(staging, 'complete'), '');
  // A folder without `complete` is what a build killed before this change left behind.
  if (!isCompleteOutput(outputDir)) await rm(outputDir, { recursive: true, force: true });
  await rename(staging, outputDir).catch((error: NodeJS.ErrnoException) => {
    // Another build of the same inputs finished first: its files are the same bytes.
    if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
  });
}

/**
 * Finished steps live in files named by their input hash; a step is written to a temporary
 * name and renamed, so a cancelled or crashed build never leaves a half-made step to reuse.
 */
async function cachedStep(
  stepsDir: string,
  name: string,
  reused: string[],
  produce: (out: string) => Promise<void>,
): Promise<string> {
  const path = join(stepsDir, name);
  if (existsSync(path)) {
    reused.push(name.replace(/-[0-9a-f]{64}/, ''));
    return path;
  }
  // Unique per call: two builds in one process may make the same step at once.
  const partial = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await produce(partial);
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
  return path;
}

export function debianComponent(
  pkg: ResolvedPackage | ArchivePackage,
  mirror: string,
  architecture: string,
): SbomComponent {
  return {
    name: pkg.name,
    version: pkg.version,
    purl: `pkg:deb/debian/${pkg.name}@${encodeURIComponent(pkg.version)}?arch=${pkg.architecture === 'all' ? 'all' : architecture}`,
    downloadLocation: `${mirror}/${pkg.filename}`,
    sha256: pkg.sha256,
    ...(pkg.source && pkg.source !== pkg.name ? { source: pkg.source } : {}),
    supplier: 'Organization: Debian',
  };
}

export function epochFromEnvironment(): number | undefined {
  const raw = process.env.SOURCE_DATE_EPOCH;
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new BoardfleetError(
      'invalid-config',
      `SOURCE_DATE_EPOCH=${raw} is not a positive whole number of seconds`,
    );
  }
  return value;
}

let builderHashCache: string | undefined;

/** The builder's own code and scripts are inputs too: a changed init script must not reuse a cached root. */
export function builderSourcesHash(): string {
  if (builderHashCache) return builderHashCache;
  const hash = createHash('sha256');
  const files = (readdirSync(BUILDER_DIRECTORY, { recursive: true }) as string[])
    .filter((file) => !file.endsWith('.test.ts') && /\.(ts|sh|c|script)$/.test(file))
    .sort();
  for (const file of files) {
    hash.update(relative(BUILDER_DIRECTORY, join(BUILDER_DIRECTORY, file)));
    hash.update(readFileSync(join(BUILDER_DIRECTORY, file)));
  }
  builderHashCache = hash.digest('hex');
  return builderHashCache;
}

function boardFingerprint(board: LinuxBoard): string {
  return hashOf(board);
}

function recipeFingerprint(recipe: ImageRecipe): string {
  const { file: _file, ...content } = recipe;
  const sources = recipe.overlay.map((overlay) =>
    overlay.sourcePath ? sha256(readFileSync(overlay.sourcePath)) : null,
  );
  return hashOf({ content, sources });
}

export function hashOf(value: unknown): string {
  return sha256(Buffer.from(JSON.stringify(value)));
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('hex');
}

function uuidFrom(hash: string): string {
  return `${hash.slice(0, 8)}-${hash.slice(8, 12)}-4${hash.slice(13, 16)}-8${hash.slice(17, 20)}-${hash.slice(20, 32)}`;
}

export function packageVersion(): string {
  return (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version;
}
