import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LinuxBoard } from '../../boards/board-catalogue.ts';
import { sha256 } from '../../lib/hash.ts';
import { type AgentBundle, bundleAgent } from '../agent-runtime/agent-bundle.ts';
import { fetchNodeRuntime, type NodeRuntime } from '../agent-runtime/node-runtime.repository.ts';
import type { BuildReporter } from '../build-runner.ts';
import { NEVER_INSTALLED, pickKernelPackage, requirePackage } from '../debian/build-archive.ts';
import type { ArchivePackage, DebianArchive, ResolvedPackage } from '../debian/debian-archive.repository.ts';
import type { ImageRecipe } from '../recipe/linux-image-recipe.ts';
import { builderSourcesHash, hashOf } from '../steps/input-hash.ts';
import { rootfsPackages } from './rootfs/assemble-rootfs.ts';
import { buildRebootHelper } from './rootfs/reboot-helper/reboot-helper.ts';

/** What every step of one image build works with. */
export interface ImageBuild {
  recipe: ImageRecipe;
  board: LinuxBoard;
  archive: DebianArchive;
  /** SOURCE_DATE_EPOCH: every timestamp in the image. */
  epoch: number;
  cacheDir: string;
  /** Finished steps, by input hash. */
  stepsDir: string;
  /** This build's scratch folder, removed at the end. */
  work: string;
  reporter: BuildReporter;
  /** The steps found finished in `stepsDir`, for the log and the result. */
  reused: string[];
}

/** The Debian packages of an image, picked from the archive's index. */
export interface ImagePackages {
  /** The root filesystem's packages and their dependencies. */
  root: ResolvedPackage[];
  kernel: ResolvedPackage;
  /** busybox-static: the root's shell, and the initramfs's. */
  busybox: ResolvedPackage;
  /** The board's boot firmware (raspi-firmware), if it has one. */
  firmware: ArchivePackage | null;
  all: Array<ResolvedPackage | ArchivePackage>;
}

/** What the image carries besides Debian's packages. */
export interface AgentRuntime {
  node: NodeRuntime | null;
  agent: AgentBundle | null;
  rebootHelper: string;
}

/** The cache keys of the two cached trees, and the hash of every input of the image. */
export interface ImageInputKeys {
  rootfs: string;
  initramfs: string;
  inputsHash: string;
}

/** The root's packages with their dependencies, the kernel and the board's firmware, logged. */
export function resolveImagePackages(build: ImageBuild): ImagePackages {
  const { archive, recipe, board } = build;
  const root = archive.resolve(rootfsPackages(recipe), { exclude: NEVER_INSTALLED });
  const kernel = pickKernelPackage(archive, board);
  const firmware = board.firmware ? requirePackage(archive, board.firmware.package, board) : null;
  const all = [...root, kernel, ...(firmware ? [firmware] : [])];
  build.reporter.log(`packages: ${all.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ')}`);
  return { root, kernel, busybox: root.find((pkg) => pkg.name === 'busybox-static')!, firmware, all };
}

/** Node and the bundled agent (when the recipe includes the agent), and the reboot helper. */
export async function prepareAgentRuntime(build: ImageBuild): Promise<AgentRuntime> {
  const { recipe, board, cacheDir, work, reporter } = build;
  reporter.progress('fetching the Node runtime and bundling the agent', 36);
  const node = recipe.agent.include
    ? await fetchNodeRuntime({
        architecture: board.architecture,
        versionRange: recipe.agent.node,
        cacheDir,
        signal: reporter.signal,
      })
    : null;
  const agent = recipe.agent.include
    ? await bundleAgent({ outFile: join(work, 'agent.mjs'), cacheDir: join(cacheDir, 'agent-bundle') })
    : null;
  const rebootHelper = await buildRebootHelper(cacheDir);
  if (node) reporter.log(`Node ${node.version} (${node.packageName}, sha256 ${node.sha256.slice(0, 12)})`);
  if (agent) reporter.log(`agent bundle ${agent.size} bytes, sha256 ${agent.sha256.slice(0, 12)}`);
  return { node, agent, rebootHelper };
}

/**
 * The hashes every cached step is named by: the builder's code, the epoch, the board file and the
 * recipe (with its overlay files' bytes) go into each, and each step's own packages and programs.
 */
export function imageInputKeys(
  build: ImageBuild,
  packages: ImagePackages,
  runtime: AgentRuntime,
): ImageInputKeys {
  const common = {
    builderHash: builderSourcesHash(),
    epoch: build.epoch,
    board: hashOf(build.board),
    recipe: recipeFingerprint(build.recipe),
  };
  const rootfs = hashOf({
    ...common,
    packages: packages.root.map((pkg) => pkg.sha256),
    node: runtime.node?.sha256 ?? null,
    agent: runtime.agent?.sha256 ?? null,
    rebootHelper: sha256(readFileSync(runtime.rebootHelper)),
  });
  const initramfs = hashOf({ ...common, kernel: packages.kernel.sha256, busybox: packages.busybox.sha256 });
  const inputsHash = hashOf({
    rootfsKey: rootfs,
    initramfsKey: initramfs,
    firmware: packages.firmware?.sha256 ?? null,
  });
  return { rootfs, initramfs, inputsHash };
}

/** The recipe's content and its overlay sources' bytes, without this checkout's path to it. */
function recipeFingerprint(recipe: ImageRecipe): string {
  const { file: _file, ...content } = recipe;
  const sources = recipe.overlay.map((overlay) =>
    overlay.sourcePath ? sha256(readFileSync(overlay.sourcePath)) : null,
  );
  return hashOf({ content, sources });
}
