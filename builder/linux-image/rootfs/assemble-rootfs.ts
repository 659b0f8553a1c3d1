import { lstat, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import type { LinuxBoard } from '../../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { type ImageInfo, MOUNTS, type SlotDevices } from '../../../protocol/linux-ab-layout.ts';
import { byCodeUnit } from '../../disk/file-tree.ts';
import type { ImageRecipe } from '../../recipe/linux-image-recipe.ts';
import { installBusybox, ROOTFS_APPLETS } from './busybox.ts';
import { ELF_MACHINE, isElfFile, readElfInfo } from '../../native/elf-file.ts';
import {
  NETWORK_SCRIPT_PATH,
  networkInterfaceScript,
  rootfsInitScript,
  udhcpcScript,
} from './init-scripts.ts';
import { LibraryResolver, type PackageTree } from './library-resolver.ts';
import { TreeWriter } from './tree-writer.ts';

/** Where the image keeps what the builder puts in; the agent's linux-ab strategy runs the reboot helper. */
export const ROOTFS_PATHS = {
  init: '/sbin/init',
  node: '/usr/bin/node',
  agent: '/opt/boardfleet/agent.mjs',
  rebootHelper: '/usr/sbin/boardfleet-reboot',
  /** {@link ImageInfo}: the image for the agent's inventory, and the board's trial method for linux-ab. */
  imageInfo: MOUNTS.imageInfo,
  /** The image's own app, `<name>-<version>/`, copied to the agent's data dir on the first boot. */
  appDirectory: '/opt/boardfleet/app',
  /** Names the recipe and its version, as `PRETTY_NAME` and `VERSION_ID`. */
  osRelease: '/etc/os-release',
} as const;

/**
 * The root's files that change from one version of a recipe to the next even when nothing else
 * does: the two that carry the version, and the overlay, which is what a recipe's author edits.
 */
export function perVersionFiles(recipe: ImageRecipe): string[] {
  const paths = [ROOTFS_PATHS.osRelease, ROOTFS_PATHS.imageInfo, ...recipe.overlay.map((file) => file.path)];
  return [...new Set(paths)];
}

/** Package documentation never goes into an image. */
const LEFT_OUT = /^usr\/share\/(doc|man|info|lintian|bug)(\/|$)/;

export interface AssembleRootfsInput {
  /** A missing or empty directory to write the tree into. */
  dir: string;
  board: LinuxBoard;
  recipe: ImageRecipe;
  /** Every package fetched for the root: {@link rootfsPackages} and their dependencies. */
  packageTrees: PackageTree[];
  /** The Node runtime for the board's architecture; required when the recipe includes the agent. */
  nodeBinary: string | null;
  /** The agent bundled into one ES module; required when the recipe includes the agent. */
  agentBundle: string | null;
  /** The static boardfleet-reboot program (see buildRebootHelper). */
  rebootHelper: string;
  /** The partitions as the board's kernel names them; the board file's by default. */
  slotDevices?: SlotDevices;
}

export interface AssembledRootfs {
  /** Packages whose files went into the tree, sorted: what the SBOM lists. */
  packagesUsed: string[];
  /** Shared libraries copied in (tree paths), sorted. */
  libraries: string[];
  /** busybox applets linked in bin/. */
  applets: string[];
}

/** The Debian packages the root filesystem is made from, before dependencies are resolved. */
export function rootfsPackages(recipe: ImageRecipe): string[] {
  const names = new Set(['busybox-static', ...recipe.packages]);
  if (recipe.agent.include) for (const name of ['libc6', 'libgcc-s1', 'libstdc++6']) names.add(name);
  if (recipe.caCertificates) names.add('ca-certificates');
  return [...names].sort(byCodeUnit);
}

/**
 * Writes the root filesystem of one slot into `dir`, as data: no chroot, no maintainer scripts.
 * It holds busybox, the recipe's packages, Node and the agent with exactly the shared libraries
 * their ELF headers ask for, the init, the reboot helper, the slot layout, the app and the
 * recipe's overlay. The same inputs always give the same tree (contents, modes, names).
 */
export async function assembleRootfs(input: AssembleRootfsInput): Promise<AssembledRootfs> {
  const { board, recipe } = input;
  const tree = await TreeWriter.create(input.dir);
  const packages = new RootfsPackages(input.packageTrees);
  const libraries = new LibraryResolver(tree, packages.trees, board, packages.used);

  await writeSkeleton(tree);
  const recipeFiles = await installRecipePackages(tree, recipe, packages);
  const applets = await installBusyboxOf(tree, packages, board);
  await writeSystemFiles(tree, board, recipe);
  if (recipe.caCertificates) await installCertificates(tree, packages);
  if (recipe.agent.include) await installAgent(tree, input, libraries);
  // Programs in the recipe's packages get the libraries they need (a package's own go in whole).
  for (const file of recipeFiles) {
    const host = tree.path(file);
    if ((await lstat(host)).isFile() && (await isElfFile(host))) await libraries.installIfProgram(host, file);
  }
  const appRelease = recipe.appBundle ? await installAppRelease(tree, recipe.appBundle) : null;
  await writeOverlay(tree, recipe);
  await installRebootHelper(tree, input.rebootHelper, board);
  await writeSlotLayout(tree, input, appRelease);

  return {
    packagesUsed: [...packages.used].sort(byCodeUnit),
    libraries: libraries.installed().sort(byCodeUnit),
    applets,
  };
}

/** The package trees a root is made from, by name, and which of them it took files from. */
class RootfsPackages {
  readonly trees: PackageTree[];
  readonly used = new Set<string>();

  constructor(trees: PackageTree[]) {
    this.trees = [...trees].sort((a, b) => byCodeUnit(a.name, b.name));
  }

  /** The package's tree, counted as used; `why` says what needs it when the build did not fetch it. */
  take(name: string, why: string): PackageTree {
    const found = this.trees.find((candidate) => candidate.name === name);
    if (!found) {
      throw new BoardfleetError(
        'rootfs-package-missing',
        `the root filesystem needs the Debian package ${name} (${why}), which the build did not fetch`,
      );
    }
    this.used.add(name);
    return found;
  }
}

/** The folders every root has, the mount points among them with the modes the kernel expects. */
async function writeSkeleton(tree: TreeWriter): Promise<void> {
  for (const path of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'lib',
    'etc/boardfleet',
    'opt/boardfleet',
    'var',
  ]) {
    await tree.directory(path);
  }
  for (const mount of ['dev', 'run', MOUNTS.data.slice(1), MOUNTS.boot.slice(1)]) await tree.directory(mount);
  await tree.directory('proc', 0o555);
  await tree.directory('sys', 0o555);
  await tree.directory('tmp', 0o1777);
  await tree.directory('root', 0o700);
  await tree.symlink('var/run', '../run');
  await tree.symlink('var/tmp', '../tmp');
}

/** The recipe's packages, copied whole but for their documentation; returns the files copied. */
async function installRecipePackages(
  tree: TreeWriter,
  recipe: ImageRecipe,
  packages: RootfsPackages,
): Promise<string[]> {
  const files: string[] = [];
  for (const name of [...recipe.packages].sort(byCodeUnit)) {
    const source = packages.take(name, 'listed in the recipe');
    files.push(...(await tree.copyTree(source.root, '', (path) => !LEFT_OUT.test(path))));
  }
  return files;
}

async function installBusyboxOf(
  tree: TreeWriter,
  packages: RootfsPackages,
  board: LinuxBoard,
): Promise<string[]> {
  const busybox = packages.take('busybox-static', 'busybox is the shell and tools of the image');
  return installBusybox(tree, join(busybox.root, 'bin/busybox'), ROOTFS_APPLETS, board.architecture);
}

async function installCertificates(tree: TreeWriter, packages: RootfsPackages): Promise<void> {
  const certificates = packages.take('ca-certificates', 'the recipe sets caCertificates');
  await tree.file('etc/ssl/certs/ca-certificates.crt', await certificateBundle(certificates.root));
}

/** Node with the libraries it needs, and the agent bundle. */
async function installAgent(
  tree: TreeWriter,
  input: AssembleRootfsInput,
  libraries: LibraryResolver,
): Promise<void> {
  if (!input.nodeBinary || !input.agentBundle) {
    throw new BoardfleetError(
      'rootfs-agent-missing',
      `the recipe ${input.recipe.name} includes the agent: pass the Node runtime and the agent bundle`,
    );
  }
  await libraries.install(input.nodeBinary, 'the Node runtime');
  await tree.copy(input.nodeBinary, ROOTFS_PATHS.node.slice(1), 0o755);
  await tree.copy(input.agentBundle, ROOTFS_PATHS.agent.slice(1), 0o644);
}

/** The recipe's app under `<appDirectory>/<name>-<version>/`; returns that release name. */
async function installAppRelease(
  tree: TreeWriter,
  bundle: NonNullable<ImageRecipe['appBundle']>,
): Promise<string> {
  const release = `${bundle.name}-${bundle.version}`;
  await installAppBundle(tree, bundle, `${ROOTFS_PATHS.appDirectory.slice(1)}/${release}`);
  return release;
}

/** The recipe's own files, last but for the builder's: they win over the packages'. */
async function writeOverlay(tree: TreeWriter, recipe: ImageRecipe): Promise<void> {
  for (const file of recipe.overlay) {
    const path = file.path.slice(1);
    if (file.content !== null) await tree.file(path, file.content, file.mode);
    else await tree.copy(file.sourcePath!, path, file.mode);
  }
}

async function installRebootHelper(tree: TreeWriter, rebootHelper: string, board: LinuxBoard): Promise<void> {
  const reboot = await readElfInfo(rebootHelper);
  if (reboot.machine !== ELF_MACHINE[board.architecture] || reboot.interpreter !== null) {
    throw new BoardfleetError(
      'rootfs-reboot-helper',
      `${rebootHelper} must be a static ${board.architecture} program (see buildRebootHelper)`,
    );
  }
  await tree.copy(rebootHelper, ROOTFS_PATHS.rebootHelper.slice(1), 0o755);
}

/** The slot devices, the image's description for the agent, the init that mounts them, its network choice, and udhcpc's script. */
async function writeSlotLayout(
  tree: TreeWriter,
  input: AssembleRootfsInput,
  appRelease: string | null,
): Promise<void> {
  const { board, recipe } = input;
  const devices = input.slotDevices ?? board.partitions;
  const slots: SlotDevices = { boot: devices.boot, a: devices.a, b: devices.b, data: devices.data };
  await tree.file(MOUNTS.slotDevices.slice(1), `${JSON.stringify(slots, null, 2)}\n`);
  const imageInfo: ImageInfo = {
    schemaVersion: 1,
    name: recipe.name,
    version: recipe.version,
    board: board.id,
    abTrial: board.abTrial,
  };
  await tree.file(ROOTFS_PATHS.imageInfo.slice(1), `${JSON.stringify(imageInfo, null, 2)}\n`);
  await tree.file(
    ROOTFS_PATHS.init.slice(1),
    rootfsInitScript({
      devices: slots,
      networkInterface: board.network.interface,
      consoleDevice: board.console.device,
      agent: recipe.agent.include,
      debugShell: recipe.debugShell,
      appRelease,
    }),
    0o755,
  );
  await tree.file(NETWORK_SCRIPT_PATH, networkInterfaceScript(), 0o644);
  await tree.file('usr/share/udhcpc/default.script', udhcpcScript(), 0o755);
}

async function writeSystemFiles(tree: TreeWriter, board: LinuxBoard, recipe: ImageRecipe): Promise<void> {
  await tree.file(
    'etc/passwd',
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  );
  await tree.file('etc/group', 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  await tree.file('etc/hostname', `${recipe.hostname}\n`);
  await tree.file(
    'etc/hosts',
    `127.0.0.1\tlocalhost\n127.0.1.1\t${recipe.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  // glibc 2.36 has the files and dns lookups built in: no libnss_* modules needed.
  await tree.file('etc/nsswitch.conf', 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\n');
  await tree.symlink('etc/resolv.conf', '../run/resolv.conf');
  await tree.file(
    ROOTFS_PATHS.osRelease.slice(1),
    [
      'NAME="Boardfleet"',
      'ID=boardfleet',
      'ID_LIKE=debian',
      `PRETTY_NAME="Boardfleet ${recipe.name} ${recipe.version}"`,
      `VERSION_ID="${recipe.version}"`,
      `VARIANT_ID=${recipe.name}`,
      `BOARDFLEET_BOARD=${board.id}`,
      '',
    ].join('\n'),
  );
  await tree.file(
    'etc/profile',
    "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nPS1='\\h:\\w\\$ '\n[ -f /etc/motd ] && cat /etc/motd\n",
  );
}

/** Debian's update-ca-certificates, minus the script: every certificate, in a fixed order. */
async function certificateBundle(root: string): Promise<string> {
  const directory = join(root, 'usr/share/ca-certificates');
  const files = (await readdir(directory, { recursive: true }))
    .map(String)
    .filter((path) => path.endsWith('.crt'))
    .sort(byCodeUnit);
  if (files.length === 0) {
    throw new BoardfleetError('rootfs-certificates', `${directory} holds no .crt files`);
  }
  const parts = await Promise.all(files.map((file) => readFile(join(directory, file), 'utf8')));
  return parts.map((text) => (text.endsWith('\n') ? text : `${text}\n`)).join('');
}

async function installAppBundle(
  tree: TreeWriter,
  bundle: NonNullable<ImageRecipe['appBundle']>,
  destination: string,
): Promise<void> {
  if (bundle.kind === 'directory') {
    await tree.copyTree(bundle.absolutePath, destination);
  } else {
    await tree.directory(destination);
    try {
      await tar.x({
        file: bundle.absolutePath,
        cwd: tree.path(destination),
        strict: true,
        preserveOwner: false,
      });
    } catch (error) {
      throw new BoardfleetError(
        'rootfs-app-bundle',
        `${bundle.absolutePath} is not a readable tar archive: ${(error as Error).message}`,
      );
    }
  }
  // Extraction applies this process's umask: settle the modes so that the image does not depend on it.
  await tree.normaliseModes(destination);
  if (!(await tree.exists(`${destination}/boardfleet-app.json`))) {
    throw new BoardfleetError(
      'rootfs-app-bundle',
      `${bundle.absolutePath} has no boardfleet-app.json at its top: the agent could not start it`,
    );
  }
}
