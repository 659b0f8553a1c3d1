import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { getLinuxBoard, type LinuxBoard } from '../../boards/board-catalogue.ts';
import type { BuildReporter, BuiltFile } from '../build-runner.ts';
import { fetchWithProgress, openDebianArchive } from '../debian/build-archive.ts';
import { type ImageTool, ImageTools } from '../disk/image-tools.repository.ts';
import type { ImageRecipe } from '../recipe/linux-image-recipe.ts';
import { loadRecipeOfKind } from '../recipe/recipe.ts';
import { stagedOutput } from '../steps/staged-output.ts';
import {
  type ImageBuild,
  imageInputKeys,
  prepareAgentRuntime,
  resolveImagePackages,
} from './image-inputs.ts';
import {
  type ImageOutputs,
  imageOutputs,
  writeDiskImage,
  writeImagePayload,
  writeImageSbom,
} from './image-outputs.ts';
import { makeInitramfs, makeRootfs, slotBootFiles, unpackKernel } from './image-trees.ts';

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
  const recipe = loadRecipeOfKind(input.recipeFile, 'linux-image');
  const board = getLinuxBoard(input.board);
  const stepsDir = input.stepsDir ?? join(input.cacheDir, 'image-steps');
  // A missing tool is said before hundreds of megabytes are downloaded, not after.
  const tools = new ImageTools();
  for (const tool of BUILD_TOOLS) await tools.require(tool);
  await mkdir(stepsDir, { recursive: true });
  const work = await mkdtemp(join(input.cacheDir, 'work-'));
  try {
    reporter.progress('reading the Debian archive index', 2);
    const { archive, epoch } = await openDebianArchive(recipe.base, board.architecture, input, reporter);
    const build: ImageBuild = {
      recipe,
      board,
      archive,
      epoch,
      cacheDir: input.cacheDir,
      stepsDir,
      work,
      reporter,
      reused: [],
    };

    const packages = resolveImagePackages(build);
    reporter.progress('fetching packages', 5);
    await fetchWithProgress(archive, packages.all, reporter, 5, 35);
    const runtime = await prepareAgentRuntime(build);
    const keys = imageInputKeys(build, packages, runtime);
    reporter.log(`inputs ${keys.inputsHash.slice(0, 16)}`);

    const rootfs = await makeRootfs(build, packages.root, runtime, keys.rootfs);
    const kernel = await unpackKernel(build, packages.kernel);
    const initramfs = await makeInitramfs(build, kernel, packages.busybox, keys.initramfs);
    const slot = slotBootFiles(build, kernel, initramfs);

    const outputs = imageOutputs(build, keys.inputsHash);
    const reusedOutputs = await stagedOutput(outputs.directory, async (staging) => {
      const staged = (file: string) => join(staging, basename(file));
      await writeDiskImage(
        build,
        { rootfs, slot, firmware: packages.firmware, inputsHash: keys.inputsHash },
        { image: staged(outputs.diskImage), compressed: staged(outputs.diskImageCompressed) },
      );
      await writeImagePayload(build, { rootfs, slot }, staged(outputs.updatePayload));
      await writeImageSbom(build, packages, runtime, keys.inputsHash, staged(outputs.sbom));
    });
    if (reusedOutputs) build.reused.push('disk image', 'update payload', 'sbom');
    if (build.reused.length > 0) reporter.log(`reused cached steps: ${build.reused.join(', ')}`);
    reporter.progress('done', 98);
    return {
      files: builtFiles(recipe, board, outputs),
      inputsHash: keys.inputsHash,
      diskImage: outputs.diskImage,
      diskImageCompressed: outputs.diskImageCompressed,
      updatePayload: outputs.updatePayload,
      sbom: outputs.sbom,
      reusedSteps: build.reused,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** What the server stores: the update payload, the compressed disk image and the SBOM. */
function builtFiles(recipe: ImageRecipe, board: LinuxBoard, outputs: ImageOutputs): BuiltFile[] {
  const boards = [board.id];
  // One recipe version is built for several boards: each board's build is its own artifact.
  const name = `${recipe.name}-${board.id}`;
  const file = (role: BuiltFile['role'], path: string, artifactName: string, kind: BuiltFile['kind']) => ({
    role,
    path,
    name: artifactName,
    version: recipe.version,
    kind,
    boards,
  });
  return [
    file('update-payload', outputs.updatePayload, name, 'linux-image'),
    file('disk-image', outputs.diskImageCompressed, `${name}-disk`, 'disk-image'),
    file('sbom', outputs.sbom, `${name}-sbom`, 'sbom'),
  ];
}
