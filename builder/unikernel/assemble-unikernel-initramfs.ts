import { basename } from 'node:path';
import type { VmBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ELF_MACHINE, readElfInfo } from '../native/elf-file.ts';
import { LibraryResolver, type PackageTree } from '../linux-image/rootfs/library-resolver.ts';
import { TreeWriter } from '../linux-image/rootfs/tree-writer.ts';
import type { UnikernelApplication } from './unikernel-application.ts';
import type { UnikernelRecipe } from '../recipe/unikernel-recipe.ts';

/** The kernel runs this first (rdinit=); it execs the application, which becomes PID 1. */
export const PRE_INIT_PATH = '/sbin/boardfleet-init';
export const PRE_INIT_CONFIG = '/etc/boardfleet/init.conf';
/** Where the application lives in the initramfs. */
export const APPLICATION_DIRECTORY = '/app';
/** A writable folder for the application's state (in RAM: gone at power-off). */
export const STATE_DIRECTORY = '/var/lib/boardfleet';

export interface AssembleUnikernelInitramfsInput {
  /** A missing or empty directory to write the tree into (the builder packs it as a cpio). */
  dir: string;
  board: VmBoard;
  recipe: UnikernelRecipe;
  /** The static pre-init program. */
  preInit: string;
  /** The kernel package's lib/modules/<version>/ directory. */
  modulesRoot: string;
  /** Module files relative to `modulesRoot`, in load order. */
  moduleFiles: string[];
  application: UnikernelApplication;
  /** Unpacked Debian packages a Node application's libraries come from. */
  packageTrees: PackageTree[];
}

/**
 * Writes the initramfs tree of a unikernel-style image: the pre-init and its config, the
 * modules, and the application. Nothing else: no shell, no init system, no package manager.
 */
export async function assembleUnikernelInitramfs(input: AssembleUnikernelInitramfsInput): Promise<void> {
  const { board, recipe, application } = input;
  const tree = await TreeWriter.create(input.dir);
  for (const path of [
    'dev',
    'etc/boardfleet',
    'sbin',
    APPLICATION_DIRECTORY.slice(1),
    STATE_DIRECTORY.slice(1),
  ]) {
    await tree.directory(path);
  }
  await tree.directory('proc', 0o555);
  await tree.directory('sys', 0o555);
  await tree.directory('tmp', 0o1777);
  await requireStatic(input.preInit, board, 'the pre-init');
  await tree.copy(input.preInit, PRE_INIT_PATH.slice(1), 0o755);

  const kernelVersion = basename(input.modulesRoot);
  const moduleDirectory = `lib/modules/${kernelVersion}`;
  for (const file of input.moduleFiles) {
    await tree.copy(`${input.modulesRoot}/${file}`, `${moduleDirectory}/${file}`, 0o644);
  }

  let program: string;
  const args = [...recipe.app.args];
  if (application.kind === 'c') {
    await requireStatic(application.program, board, `the application ${recipe.name}`);
    program = `${APPLICATION_DIRECTORY}/${recipe.name}`;
    await tree.copy(application.program, program.slice(1), 0o755);
  } else {
    const libraries = new LibraryResolver(tree, input.packageTrees, board, new Set());
    await libraries.install(application.node.binary, 'the Node runtime');
    program = '/usr/bin/node';
    await tree.copy(application.node.binary, program.slice(1), 0o755);
    const module = `${APPLICATION_DIRECTORY}/${recipe.name}.mjs`;
    await tree.copy(application.module, module.slice(1), 0o644);
    args.unshift(module);
    // Node looks names up through the C library, which reads these two files.
    await tree.file('etc/hosts', '127.0.0.1 localhost\n::1 localhost\n');
    await tree.file('etc/nsswitch.conf', 'hosts: files dns\n');
  }

  const lines = [
    '# Read by boardfleet-init, which then execs the application as PID 1.',
    `hostname ${recipe.hostname ?? recipe.name}`,
    ...input.moduleFiles.map((file) => `module /${moduleDirectory}/${file}`),
    networkLine(recipe),
    ...(recipe.network.mode === 'static' ? recipe.network.dns.map((server) => `dns ${server}`) : []),
    `env BOARDFLEET_IMAGE_NAME=${recipe.name}`,
    `env BOARDFLEET_IMAGE_VERSION=${recipe.version}`,
    `env BOARDFLEET_IMAGE_BOARD=${board.id}`,
    ...Object.entries(recipe.app.env)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => `env ${name}=${value}`),
    `exec ${program}`,
    ...args.map((arg) => `arg ${arg}`),
  ];
  await tree.file(PRE_INIT_CONFIG.slice(1), `${lines.join('\n')}\n`);
  await tree.file(
    'etc/boardfleet/image.json',
    `${JSON.stringify({ schemaVersion: 1, name: recipe.name, version: recipe.version, board: board.id }, null, 2)}\n`,
  );
}

function networkLine(recipe: UnikernelRecipe): string {
  const network = recipe.network;
  if (network.mode === 'none') return 'net none';
  if (network.mode === 'dhcp') return 'net dhcp eth0';
  return `net static eth0 ${network.address}${network.gateway ? ` ${network.gateway}` : ''}`;
}

async function requireStatic(path: string, board: VmBoard, what: string): Promise<void> {
  const info = await readElfInfo(path);
  if (info.machine !== ELF_MACHINE[board.architecture] || info.interpreter !== null) {
    throw new BoardfleetError(
      'unikernel-program',
      `${what} (${path}) must be a static ${board.architecture} program: it runs before anything else exists`,
    );
  }
}
