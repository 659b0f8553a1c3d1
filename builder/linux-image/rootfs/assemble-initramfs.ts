import { basename, join } from 'node:path';
import type { LinuxBoard } from '../../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { INITRAMFS_APPLETS, installBusybox } from './busybox.ts';
import { BOOT_TRIAL_SCRIPT_PATH, bootTrialScript, initramfsInitScript } from './init-scripts.ts';
import { TreeWriter } from './tree-writer.ts';

export interface AssembleInitramfsInput {
  /** A missing or empty directory to write the tree into (the builder packs it as a cpio). */
  dir: string;
  board: LinuxBoard;
  /** busybox-static's bin/busybox. */
  busyboxStatic: string;
  /** The kernel package's lib/modules/<version>/ directory; its name is the kernel version. */
  modulesRoot: string;
  /** Module files relative to `modulesRoot`, in load order (resolveKernelModules gives them). */
  moduleFiles: string[];
  /** How long /init waits for the root device before it gives up and restarts; 30 s by default. */
  rootWaitSeconds?: number;
}

export interface AssembledInitramfs {
  kernelVersion: string;
  /** The module files, in the order /init loads them. */
  modules: string[];
}

/**
 * Writes the initramfs tree: a static busybox with the few applets /init runs, the board's
 * kernel modules under lib/modules/<version>/ with a `load-order` file, and /init, which loads
 * them, keeps the slot's boot-once trial on the boot FAT where the board's method is
 * `initramfs-trial`, mounts the slot's squashfs root (boardfleet.root= on the command line)
 * read-only and switches to it. There is no /dev/console node (a tree of plain files cannot hold one): /init
 * mounts devtmpfs before it opens the console.
 */
export async function assembleInitramfs(input: AssembleInitramfsInput): Promise<AssembledInitramfs> {
  const kernelVersion = basename(input.modulesRoot);
  if (!/^\d+\.\d+[^/]*$/.test(kernelVersion)) {
    throw new BoardfleetError(
      'initramfs-modules-root',
      `${input.modulesRoot} should be a kernel's lib/modules/<version>/ directory (e.g. lib/modules/6.1.0-28-arm64)`,
    );
  }
  const tree = await TreeWriter.create(input.dir);
  for (const directory of ['boot', 'dev', 'newroot', 'proc', 'sys']) await tree.directory(directory);
  await installBusybox(tree, input.busyboxStatic, INITRAMFS_APPLETS, input.board.architecture);
  const modulesDirectory = `lib/modules/${kernelVersion}`;
  await tree.directory(modulesDirectory);
  for (const file of input.moduleFiles) {
    if (!file.endsWith('.ko')) {
      throw new BoardfleetError('initramfs-module', `${file} is not a kernel module (.ko) file`);
    }
    await tree.copy(join(input.modulesRoot, file), `${modulesDirectory}/${file}`, 0o644);
  }
  await tree.file(`${modulesDirectory}/load-order`, input.moduleFiles.map((file) => `${file}\n`).join(''));
  const { abTrial, partitions } = input.board;
  if (abTrial === 'initramfs-trial') await tree.file(BOOT_TRIAL_SCRIPT_PATH, bootTrialScript(), 0o644);
  await tree.file(
    'init',
    initramfsInitScript({
      kernelVersion,
      rootWaitSeconds: input.rootWaitSeconds ?? 30,
      abTrial,
      bootDevice: partitions.boot,
    }),
    0o755,
  );
  return { kernelVersion, modules: [...input.moduleFiles] };
}
