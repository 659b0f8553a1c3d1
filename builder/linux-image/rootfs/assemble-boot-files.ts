import { access } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { LinuxBoard } from '../../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import {
  BOOT_CONFIG,
  CMDLINE,
  renderCmdline,
  SLOT_FILES,
  type Slot,
  slotDirectory,
  withBootSlot,
} from '../../../protocol/linux-ab-layout.ts';
import { byCodeUnit } from '../../disk/file-tree.ts';
import type { ImageRecipe } from '../../recipe/linux-image-recipe.ts';
import { TreeWriter } from './tree-writer.ts';

/** Where Debian's raspi-firmware package keeps the GPU firmware. */
export const RASPI_FIRMWARE_DIRECTORY = 'usr/lib/raspi-firmware';

/** The agent's configuration file at the root of the boot partition. */
export const AGENT_CONFIG_FILE = 'boardfleet.json';

/** One slot's boot files, as host paths, and its kernel command line as a template. */
export interface SlotBootFiles {
  /** The kernel image, written as `vmlinuz`. */
  kernel: string;
  /** The initramfs (a cpio archive), written as `initrd.img`. */
  initramfs: string;
  /** Device tree blobs, written under their own names. */
  dtbs: string[];
  /** cmdline.txt as a template with @SLOT@ and @ROOT@ (see {@link cmdlineTemplate}). */
  cmdline: string;
}

export interface AssembleBootFilesInput {
  /** A missing or empty directory to write the FAT's tree into. */
  dir: string;
  board: LinuxBoard;
  /** The extracted raspi-firmware package, or null for a board without firmware (qemu). */
  firmwareRoot: string | null;
  slots: { a: SlotBootFiles; b?: SlotBootFiles };
  /** The slot config.txt (and, until the agent arms a try, tryboot.txt) names. */
  committedSlot: Slot;
  /** boardfleet.json; a sample naming the board and a placeholder token when not given. */
  agentConfig?: Record<string, unknown>;
}

/**
 * The kernel command line of a board and recipe, with the slot and root device left as the
 * layout contract's placeholders. Besides the console it names the root device twice:
 * `root=` for people and tools, `boardfleet.root=` for the initramfs, which mounts it.
 * `panic=5` restarts a kernel that panics, so a slot on trial falls back instead of hanging.
 */
export function cmdlineTemplate(board: LinuxBoard, recipe: Pick<ImageRecipe, 'kernelCmdline'>): string {
  return [
    `console=${board.console.device},${board.console.baudRate}`,
    `root=${CMDLINE.rootPlaceholder}`,
    'ro',
    `boardfleet.root=${CMDLINE.rootPlaceholder}`,
    `${CMDLINE.slotParameter}=${CMDLINE.slotPlaceholder}`,
    'panic=5',
    'net.ifnames=0',
    ...recipe.kernelCmdline,
  ].join(' ');
}

/**
 * config.txt (or tryboot.txt) for a board booting a slot: the board's own lines, then the slot
 * files the contract names (the firmware looks for them under os_prefix=).
 */
export function bootConfigText(board: LinuxBoard, slot: Slot): string {
  const lines = [
    `# Boardfleet: ${board.name}. The agent rewrites os_prefix= to commit a slot (tryboot.txt names a slot on trial).`,
    ...board.bootConfig,
    `kernel=${SLOT_FILES.kernel}`,
    `initramfs ${SLOT_FILES.initramfs} followkernel`,
  ];
  return withBootSlot(`${lines.join('\n')}\n`, slot);
}

/**
 * Writes the boot FAT's tree: the board's firmware files, config.txt and tryboot.txt (both
 * naming the committed slot), one directory per slot with the kernel, initramfs, rendered
 * cmdline.txt and device trees, and the agent's boardfleet.json. Returns the files written.
 */
export async function assembleBootFiles(input: AssembleBootFilesInput): Promise<string[]> {
  const { board } = input;
  if (!input.slots[input.committedSlot]) {
    throw new BoardfleetError(
      'boot-files-slot',
      `slot ${input.committedSlot} is committed but has no boot files`,
    );
  }
  const tree = await TreeWriter.create(input.dir);
  const written: string[] = [];

  if (board.firmware) {
    if (!input.firmwareRoot) {
      throw new BoardfleetError(
        'boot-files-firmware',
        `${board.id} boots through the Raspberry Pi firmware: pass the extracted ${board.firmware.package} package`,
      );
    }
    for (const file of board.firmware.files) {
      const source = join(input.firmwareRoot, RASPI_FIRMWARE_DIRECTORY, file);
      await requireFile(source, `${board.id}'s firmware file ${file} (from ${board.firmware.package})`);
      await tree.copy(source, file, 0o644);
      written.push(file);
    }
  }

  const config = bootConfigText(board, input.committedSlot);
  await tree.file(BOOT_CONFIG.committed, config);
  await tree.file(BOOT_CONFIG.tryboot, config);
  written.push(BOOT_CONFIG.committed, BOOT_CONFIG.tryboot);

  for (const slot of ['a', 'b'] as const) {
    const files = input.slots[slot];
    if (!files) continue;
    const directory = slotDirectory(slot).replace(/\/$/, '');
    const cmdline = renderCmdline(files.cmdline, slot, board.partitions[slot]);
    written.push(...(await writeSlotFiles(tree, directory, board, files, cmdline)));
  }

  const agentConfig = input.agentConfig ?? {
    server: 'http://boardfleet.local:8080',
    provisioningToken: 'bfp_replace-with-a-token-from-boardfleet-tokens-create-provisioning',
    board: board.id,
    tags: [],
  };
  await tree.file(AGENT_CONFIG_FILE, `${JSON.stringify(agentConfig, null, 2)}\n`, 0o600);
  written.push(AGENT_CONFIG_FILE);
  return written.sort(byCodeUnit);
}

/**
 * Writes one slot's files into `dir`: what an update payload's `boot/` holds, with cmdline.txt
 * as given (a template there, rendered on the boot partition). Returns the files written.
 */
export async function assembleSlotFiles(input: {
  dir: string;
  board: LinuxBoard;
  files: SlotBootFiles;
  /** The cmdline.txt text; the template itself for an update payload. */
  cmdline: string;
}): Promise<string[]> {
  const tree = await TreeWriter.create(input.dir);
  return (await writeSlotFiles(tree, '', input.board, input.files, input.cmdline)).sort(byCodeUnit);
}

async function writeSlotFiles(
  tree: TreeWriter,
  directory: string,
  board: LinuxBoard,
  files: SlotBootFiles,
  cmdline: string,
): Promise<string[]> {
  const at = (name: string) => (directory ? `${directory}/${name}` : name);
  const written: string[] = [];
  const wanted = board.kernel.deviceTrees.map((path) => basename(path));
  const given = files.dtbs.map((path) => basename(path));
  const missing = wanted.filter((name) => !given.includes(name));
  if (missing.length > 0) {
    throw new BoardfleetError(
      'boot-files-device-tree',
      `${board.id} needs the device tree ${missing.join(', ')} (from ${board.kernel.package}), which was not passed`,
    );
  }
  await requireFile(files.kernel, 'the kernel image');
  await tree.copy(files.kernel, at(SLOT_FILES.kernel), 0o644);
  await requireFile(files.initramfs, 'the initramfs');
  await tree.copy(files.initramfs, at(SLOT_FILES.initramfs), 0o644);
  await tree.file(at(SLOT_FILES.cmdline), `${cmdline.trim()}\n`);
  written.push(at(SLOT_FILES.kernel), at(SLOT_FILES.initramfs), at(SLOT_FILES.cmdline));
  for (const dtb of files.dtbs) {
    await requireFile(dtb, 'a device tree');
    await tree.copy(dtb, at(basename(dtb)), 0o644);
    written.push(at(basename(dtb)));
  }
  return written;
}

async function requireFile(path: string, what: string): Promise<void> {
  try {
    await access(path);
  } catch {
    throw new BoardfleetError('boot-files-missing', `${what} is missing: ${path}`);
  }
}
