import { lstatSync } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import * as tar from 'tar';
import type { LinuxBoard } from '../../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { type ImageInfo, MOUNTS, type SlotDevices } from '../../../protocol/linux-ab-layout.ts';
import { byCodeUnit } from '../../disk/file-tree.ts';
import type { ImageRecipe } from '../../recipe/linux-image-recipe.ts';
import { installBusybox, ROOTFS_APPLETS } from './busybox.ts';
import { ELF_MACHINE, type ElfInfo, isElfFile, readElfInfo } from '../../native/elf-file.ts';
import { rootfsInitScript, udhcpcScript } from './init-scripts.ts';
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
} as const;

/** Debian's multiarch directory name per architecture. */
const TRIPLET = { arm64: 'aarch64-linux-gnu', amd64: 'x86_64-linux-gnu' } as const;

/** Package documentation never goes into an image. */
const LEFT_OUT = /^usr\/share\/(doc|man|info|lintian|bug)(\/|$)/;

/** An extracted Debian package: `root` holds its data.tar as `dpkg-deb -x` writes it. */
export interface PackageTree {
  name: string;
  root: string;
}

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
  const trees = [...input.packageTrees].sort((a, b) => byCodeUnit(a.name, b.name));
  const packageNamed = (name: string, why: string): PackageTree => {
    const found = trees.find((candidate) => candidate.name === name);
    if (!found) {
      throw new BoardfleetError(
        'rootfs-package-missing',
        `the root filesystem needs the Debian package ${name} (${why}), which the build did not fetch`,
      );
    }
    return found;
  };
  const used = new Set<string>();
  const libraries = new LibraryResolver(tree, trees, board, used);

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

  const recipeFiles: string[] = [];
  for (const name of [...recipe.packages].sort(byCodeUnit)) {
    const source = packageNamed(name, 'listed in the recipe');
    recipeFiles.push(...(await tree.copyTree(source.root, '', (path) => !LEFT_OUT.test(path))));
    used.add(name);
  }

  const busybox = packageNamed('busybox-static', 'busybox is the shell and tools of the image');
  const applets = await installBusybox(
    tree,
    join(busybox.root, 'bin/busybox'),
    ROOTFS_APPLETS,
    board.architecture,
  );
  used.add(busybox.name);

  await writeSystemFiles(tree, board, recipe);
  if (recipe.caCertificates) {
    const certificates = packageNamed('ca-certificates', 'the recipe sets caCertificates');
    await tree.file('etc/ssl/certs/ca-certificates.crt', await certificateBundle(certificates.root));
    used.add(certificates.name);
  }

  if (recipe.agent.include) {
    if (!input.nodeBinary || !input.agentBundle) {
      throw new BoardfleetError(
        'rootfs-agent-missing',
        `the recipe ${recipe.name} includes the agent: pass the Node runtime and the agent bundle`,
      );
    }
    await libraries.install(input.nodeBinary, 'the Node runtime');
    await tree.copy(input.nodeBinary, ROOTFS_PATHS.node.slice(1), 0o755);
    await tree.copy(input.agentBundle, ROOTFS_PATHS.agent.slice(1), 0o644);
  }
  for (const file of recipeFiles) {
    const host = tree.path(file);
    if ((await lstat(host)).isFile() && (await isElfFile(host))) await libraries.installIfProgram(host, file);
  }

  let appRelease: string | null = null;
  if (recipe.appBundle) {
    appRelease = `${recipe.appBundle.name}-${recipe.appBundle.version}`;
    await installAppBundle(tree, recipe.appBundle, `${ROOTFS_PATHS.appDirectory.slice(1)}/${appRelease}`);
  }

  for (const file of recipe.overlay) {
    const path = file.path.slice(1);
    if (file.content !== null) await tree.file(path, file.content, file.mode);
    else await tree.copy(file.sourcePath!, path, file.mode);
  }

  const reboot = await readElfInfo(input.rebootHelper);
  if (reboot.machine !== ELF_MACHINE[board.architecture] || reboot.interpreter !== null) {
    throw new BoardfleetError(
      'rootfs-reboot-helper',
      `${input.rebootHelper} must be a static ${board.architecture} program (see buildRebootHelper)`,
    );
  }
  await tree.copy(input.rebootHelper, ROOTFS_PATHS.rebootHelper.slice(1), 0o755);

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
  await tree.file('usr/share/udhcpc/default.script', udhcpcScript(), 0o755);

  return {
    packagesUsed: [...used].sort(byCodeUnit),
    libraries: libraries.installed().sort(byCodeUnit),
    applets,
  };
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
    'etc/os-release',
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

/**
 * Copies the shared libraries programs need, following DT_NEEDED from library to library and
 * the symlink chains Debian ships (libstdc++.so.6 → libstdc++.so.6.0.30), taking each library
 * from the first package tree that has it in the multiarch, then the plain, library directories.
 */
export class LibraryResolver {
  private readonly present = new Set<string>();
  private readonly copied = new Set<string>();
  private readonly directories: string[];

  constructor(
    private readonly tree: TreeWriter,
    private readonly trees: PackageTree[],
    /** What the programs run on: a Linux board, or a virtual machine. */
    private readonly board: { id: string; architecture: keyof typeof TRIPLET },
    private readonly used: Set<string>,
  ) {
    const triplet = TRIPLET[board.architecture];
    this.directories = [`lib/${triplet}`, `usr/lib/${triplet}`, 'lib', 'usr/lib'];
  }

  installed(): string[] {
    return [...this.copied];
  }

  private async requireMachine(path: string, what: string): Promise<ElfInfo> {
    const info = await readElfInfo(path);
    const expected = ELF_MACHINE[this.board.architecture];
    if (info.machine !== expected) {
      throw new BoardfleetError(
        'rootfs-wrong-architecture',
        `${what} (${path}) is built for ELF machine ${info.machine}; ${this.board.id} needs ${this.board.architecture} (machine ${expected})`,
      );
    }
    return info;
  }

  /** For a recipe package's file: programs and libraries of this architecture get their libraries. */
  async installIfProgram(path: string, label: string): Promise<void> {
    let info: ElfInfo;
    try {
      info = await readElfInfo(path);
    } catch (error) {
      // Firmware blobs and other machines' ELF files (32-bit, big-endian) are data here.
      if (error instanceof BoardfleetError && error.code === 'elf-invalid') return;
      throw error;
    }
    if (info.machine !== ELF_MACHINE[this.board.architecture]) return;
    await this.resolve(info, label);
  }

  /** For a program the image must run: one for another machine is an error. */
  async install(path: string, label: string): Promise<void> {
    await this.resolve(await this.requireMachine(path, label), label);
  }

  private async resolve(first: ElfInfo, firstLabel: string): Promise<void> {
    const queue: Array<{ info: ElfInfo; label: string }> = [{ info: first, label: firstLabel }];
    while (queue.length > 0) {
      const { info, label } = queue.shift()!;
      if (info.interpreter) await this.copyChain(this.locateExact(info.interpreter.slice(1), label));
      for (const name of info.needed) {
        if (this.present.has(name)) continue;
        this.present.add(name);
        const real = await this.copyChain(this.locate(name, label));
        queue.push({ info: await this.requireMachine(real, name), label: name });
      }
    }
  }

  private locate(name: string, neededBy: string): { tree: PackageTree; path: string } {
    for (const directory of this.directories) {
      for (const tree of this.trees) {
        if (existsSyncSafe(join(tree.root, directory, name))) return { tree, path: `${directory}/${name}` };
      }
    }
    throw new BoardfleetError(
      'rootfs-library-missing',
      `${neededBy} needs ${name}, which none of the packages (${this.trees.map((tree) => tree.name).join(', ')}) ` +
        `has in ${this.directories.join(', ')}: add the package that ships it to the recipe`,
    );
  }

  private locateExact(path: string, neededBy: string): { tree: PackageTree; path: string } {
    for (const tree of this.trees) if (existsSyncSafe(join(tree.root, path))) return { tree, path };
    throw new BoardfleetError(
      'rootfs-library-missing',
      `${neededBy} asks for the program interpreter /${path}, which none of the packages has (libc6 ships it)`,
    );
  }

  /** Copies a path and, if it is a symlink, what it points to, until a file; returns that file's host path. */
  private async copyChain(start: { tree: PackageTree; path: string }): Promise<string> {
    let path = start.path;
    for (let hops = 0; hops < 16; hops++) {
      const host = join(start.tree.root, path);
      const fresh = !(await this.tree.exists(path));
      if ((await lstat(host)).isSymbolicLink()) {
        const target = await readlink(host);
        if (fresh) {
          await this.tree.symlink(path, target);
          this.copied.add(path);
        }
        path = target.startsWith('/')
          ? target.slice(1)
          : posix.normalize(posix.join(posix.dirname(path), target));
        continue;
      }
      if (fresh) {
        await this.tree.copy(host, path);
        this.copied.add(path);
      }
      this.used.add(start.tree.name);
      return host;
    }
    throw new BoardfleetError(
      'rootfs-symlink-loop',
      `${join(start.tree.root, start.path)}: too many symlinks`,
    );
  }
}

function existsSyncSafe(path: string): boolean {
  try {
    return lstatSync(path) !== undefined;
  } catch {
    return false;
  }
}
