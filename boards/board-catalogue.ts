import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { BoardfleetError } from '../protocol/errors.ts';
import { TRIAL_METHODS, type TrialMethod } from '../protocol/linux-ab-layout.ts';
import { uf2BoardFileSchema } from './uf2-board-file.ts';

const BOARDS_DIRECTORY = new URL('.', import.meta.url).pathname;

const byte = z.number().int().min(0).max(0xff);
const usbId = z.number().int().min(0).max(0xffff);

const usbDeviceSchema = z.strictObject({
  vendorId: usbId,
  productId: usbId,
  /** `genuine`: only this board type has it; `clone`: a USB-serial chip many boards (and adapters) use. */
  kind: z.enum(['genuine', 'clone']),
  description: z.string().min(1),
});

const uploadSchema = z.strictObject({
  protocol: z.enum(['stk500v1', 'stk500v2', 'avr109']),
  baudRate: z.number().int().positive(),
  /**
   * `dtr-rts-pulse`: opening the port (DTR/RTS low, then high) resets the MCU into its bootloader.
   * `1200-baud-touch`: opening and closing the port at 1200 baud starts the bootloader, which
   * appears as a new USB device (avr109 boards with native USB).
   */
  reset: z.enum(['dtr-rts-pulse', '1200-baud-touch']),
});

const flashSchema = z.strictObject({
  size: z.number().int().positive(),
  pageSize: z.number().int().positive(),
  bootloaderSize: z.number().int().nonnegative(),
});

/** What a variant (another bootloader, say) may change of its board. */
const variantSchema = z.strictObject({
  name: z.string().min(1),
  flash: flashSchema.partial().optional(),
  upload: uploadSchema.partial().optional(),
  bootloader: z.string().min(1).optional(),
});

const mcuBoardFileSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
  name: z.string().min(1),
  family: z.literal('mcu'),
  mcu: z.string().regex(/^at[a-z0-9]+$/, 'an avr-gcc -mmcu name such as atmega328p'),
  signature: z.tuple([byte, byte, byte]),
  clockHz: z.number().int().positive(),
  flash: flashSchema,
  ramSize: z.number().int().positive(),
  upload: uploadSchema,
  /** The bootloader the board ships with, as a recipe the simulator can build from Debian's sources. */
  bootloader: z.string().min(1),
  usb: z.array(usbDeviceSchema),
  ledPin: z.number().int().nonnegative(),
  /** Debian's arduino-core-avr: the variant folder (pin names) and the ARDUINO_<board> macro sketches see. */
  arduinoCore: z.strictObject({ variant: z.string().min(1), boardMacro: z.string().min(1) }),
  variants: z.record(z.string().regex(/^[a-z0-9-]+$/), variantSchema).optional(),
});

type McuBoardFile = z.infer<typeof mcuBoardFileSchema>;

const debianPackage = z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, 'a Debian package name');
const blockDevice = z.string().regex(/^\/dev\/[a-z0-9]+$/, 'a block device such as /dev/mmcblk0p2');

const linuxBoardFileSchema = z
  .strictObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes'),
    name: z.string().min(1),
    family: z.literal('linux'),
    /** Debian's name for the CPU architecture of the packages the image is made of. */
    architecture: z.literal('arm64'),
    kernel: z.strictObject({
      /** The Debian package that depends on the current kernel, e.g. linux-image-arm64. */
      package: debianPackage,
      /**
       * Modules the initramfs loads, in this order, to reach the root and data partitions and
       * the network; each module's own dependencies (from its modinfo) are loaded before it.
       * Drivers built into Debian's kernel are not listed.
       */
      modules: z.array(z.string().regex(/^[a-z0-9_-]+$/, 'a module name such as sdhci-iproc')).min(1),
      /** Device trees under the kernel package's /usr/lib/linux-image-<version>/. */
      deviceTrees: z.array(
        z
          .string()
          .regex(
            /^([a-z0-9-]+\/)*[a-z0-9-]+\.dtb$/,
            'a path under /usr/lib/linux-image-<version>/ such as broadcom/bcm2711-rpi-4-b.dtb',
          ),
      ),
    }),
    /** The boot firmware (Debian's raspi-firmware), or null where nothing but the kernel boots. */
    firmware: z
      .strictObject({
        package: debianPackage,
        /** Files of /usr/lib/raspi-firmware/ this board's boot ROM and GPU load. */
        files: z.array(z.string().regex(/^[a-z0-9_]+\.(bin|elf|dat)$/, 'a firmware file name')).min(1),
      })
      .nullable(),
    /** This board's config.txt lines; the builder adds kernel=, initramfs and os_prefix= itself. */
    bootConfig: z.array(z.string().regex(/^[^\n#][^\n]*$/, 'one config.txt setting per entry')),
    /** The serial console the kernel, init and agent print to. */
    console: z.strictObject({
      device: z.string().regex(/^tty[A-Za-z]+[0-9]+$/, 'a tty name such as ttyS1'),
      baudRate: z.number().int().positive(),
    }),
    /** Block devices of the four partitions as this board's kernel names them (slots.json). */
    partitions: z.strictObject({ boot: blockDevice, a: blockDevice, b: blockDevice, data: blockDevice }),
    network: z.strictObject({
      interface: z.string().regex(/^[a-z][a-z0-9]*$/, 'an interface name such as eth0'),
    }),
    boot: z.strictObject({
      /**
       * `raspberry-pi-firmware`: the GPU firmware reads config.txt (or tryboot.txt) and loads the
       * slot directory it names. `qemu-direct`: qemu is given the slot's kernel, initramfs and
       * cmdline.txt by the test harness, which applies the same slot rules.
       */
      loader: z.enum(['raspberry-pi-firmware', 'qemu-direct']),
      notes: z.string().min(1),
    }),
    /**
     * How an update's slot boots once on trial (protocol/linux-ab-layout.ts, TrialMethod):
     * `initramfs-trial` for boards on Debian's kernel, which does not pass "0 tryboot" to the Pi
     * firmware; `firmware-tryboot` where the kernel passes it, or a test harness plays the firmware.
     */
    abTrial: z.enum(TRIAL_METHODS as [TrialMethod, ...TrialMethod[]]),
    /** How the test harness runs this board under qemu-system-aarch64, where it can. */
    qemu: z
      .strictObject({
        machine: z.string().min(1),
        cpu: z.string().min(1),
        memoryMiB: z.number().int().min(128),
      })
      .optional(),
  })
  .superRefine((board, context) => {
    const problem = (path: PropertyKey[], message: string) =>
      context.addIssue({ code: 'custom', path, message });
    if (board.boot.loader === 'raspberry-pi-firmware') {
      if (!board.firmware) problem(['firmware'], 'a board booted by the Raspberry Pi firmware must list it');
      if (board.kernel.deviceTrees.length === 0) {
        problem(['kernel', 'deviceTrees'], "the Raspberry Pi firmware needs the board's device tree");
      }
      if (!board.bootConfig.includes('arm_64bit=1')) {
        problem(['bootConfig'], 'an arm64 kernel needs arm_64bit=1');
      }
    }
    if (board.abTrial === 'initramfs-trial' && !board.kernel.modules.includes('vfat')) {
      problem(
        ['kernel', 'modules'],
        'initramfs-trial needs vfat: the initramfs marks the trial on the boot FAT',
      );
    }
    board.bootConfig.forEach((line, index) => {
      if (/^\s*(kernel|initramfs|os_prefix|cmdline)\b/.test(line)) {
        problem(
          ['bootConfig', index],
          `"${line}": the builder writes kernel=, initramfs, cmdline and os_prefix= itself`,
        );
      }
      const deviceTree = /^\s*device_tree\s*=\s*(\S+)\s*$/.exec(line)?.[1];
      if (deviceTree && !board.kernel.deviceTrees.some((path) => path.split('/').pop() === deviceTree)) {
        problem(['bootConfig', index], `device_tree=${deviceTree} is not one of kernel.deviceTrees`);
      }
    });
    for (const [key, number] of Object.entries({ boot: 1, a: 2, b: 3, data: 4 })) {
      const device = board.partitions[key as keyof typeof board.partitions];
      if (!new RegExp(`\\D${number}$`).test(device)) {
        problem(
          ['partitions', key],
          `${device} must be partition ${number} of the disk (see protocol/linux-ab-layout.ts)`,
        );
      }
    }
  });

/**
 * A virtual machine that unikernel-style images are built for: what the builder needs (kernel
 * package, modules, console) and which host boards can run its images.
 */
const vmBoardFileSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/, 'lower-case letters, digits, dashes and underscores'),
  name: z.string().min(1),
  family: z.literal('vm'),
  /** Debian's name for the CPU architecture. */
  architecture: z.enum(['amd64', 'arm64']),
  kernel: z.strictObject({
    /** The Debian kernel metapackage, e.g. linux-image-cloud-amd64 (the small flavour for VMs). */
    package: debianPackage,
    /** Modules the pre-init loads, in this order (with their dependencies before them). */
    modules: z.array(z.string().regex(/^[a-z0-9_-]+$/, 'a module name such as virtio_net')),
  }),
  console: z.strictObject({ device: z.string().regex(/^tty[A-Za-z]+[0-9]+$/, 'a tty name such as ttyS0') }),
  /**
   * Boards of agents that may run this VM's images (their `vm` strategy): an image's artifact lists
   * them, so a release can target them. `generic-x64` is what an agent on a plain x86_64 Linux
   * machine reports.
   */
  hostBoards: z.array(z.string().min(1)).min(1),
  notes: z.string().min(1),
});

const boardFileSchema = z.discriminatedUnion('family', [
  mcuBoardFileSchema,
  linuxBoardFileSchema,
  vmBoardFileSchema,
  uf2BoardFileSchema,
]);

/** A microcontroller board: what the build, the flasher, `ports` and the simulator need to know. */
export interface McuBoard extends Omit<McuBoardFile, 'variants'> {
  /** `uno`, or `nano:old-bootloader` for a variant. */
  id: string;
  /** Flash a sketch may use: the chip's flash minus the bootloader. */
  applicationFlashSize: number;
}

/** A board that runs a Boardfleet Linux image: what the image builder and the qemu harness need. */
export type LinuxBoard = z.infer<typeof linuxBoardFileSchema>;

/** A virtual machine for unikernel-style images. */
export type VmBoard = z.infer<typeof vmBoardFileSchema>;

/** A microcontroller flashed through its boot ROM's UF2 drive (the Raspberry Pi Pico). */
export type Uf2Board = z.infer<typeof uf2BoardFileSchema>;

/** The Arduino toolkit's name for a board: always a microcontroller board. */
export type Board = McuBoard;

/** Any board of the catalogue; `family` tells which. */
export type AnyBoard = McuBoard | LinuxBoard | VmBoard | Uf2Board;

let catalogue: Map<string, AnyBoard> | undefined;

/** Every microcontroller board, variants included, read and validated once from `boards/*.yaml`. */
export function listBoards(directory = BOARDS_DIRECTORY): McuBoard[] {
  return listAllBoards(directory).filter(isMcuBoard);
}

/** Every board that runs a Linux image. */
export function listLinuxBoards(directory = BOARDS_DIRECTORY): LinuxBoard[] {
  return listAllBoards(directory).filter(isLinuxBoard);
}

/** Every virtual machine that unikernel images are built for. */
export function listVmBoards(directory = BOARDS_DIRECTORY): VmBoard[] {
  return listAllBoards(directory).filter(isVmBoard);
}

/** Every UF2 board (flashed through its boot ROM's drive). */
export function listUf2Boards(directory = BOARDS_DIRECTORY): Uf2Board[] {
  return listAllBoards(directory).filter(isUf2Board);
}

/** Every board of every family, sorted by id. */
export function listAllBoards(directory = BOARDS_DIRECTORY): AnyBoard[] {
  return [...readCatalogue(directory).values()];
}

export const isMcuBoard = (board: AnyBoard): board is McuBoard => board.family === 'mcu';
export const isLinuxBoard = (board: AnyBoard): board is LinuxBoard => board.family === 'linux';
export const isVmBoard = (board: AnyBoard): board is VmBoard => board.family === 'vm';
export const isUf2Board = (board: AnyBoard): board is Uf2Board => board.family === 'uf2';

/**
 * A microcontroller board by id (`uno`, `nano:old-bootloader`). An unknown id is an error that
 * lists the known ones; a Linux board's id says that it takes an image recipe instead.
 */
export function getBoard(id: string, directory = BOARDS_DIRECTORY): McuBoard {
  const board = getAnyBoard(id, directory);
  if (isMcuBoard(board)) return board;
  if (isUf2Board(board)) {
    throw new BoardfleetError(
      'board-wrong-family',
      `"${id}" (${board.name}) is an ${board.mcu.toUpperCase()} board flashed through its UF2 drive, not an AVR board: ` +
        `the Arduino toolchain and bootloaders do not apply to it. AVR boards: ${idsOf(listBoards(directory))}`,
    );
  }
  const example = isVmBoard(board) ? 'http-hello' : 'pi-minimal';
  throw new BoardfleetError(
    'board-wrong-family',
    `"${id}" (${board.name}) is a ${isVmBoard(board) ? 'virtual machine' : 'Linux board'}: it runs an image built from a recipe ` +
      `(boardfleet build ${example} --board ${id}), not a sketch or microcontroller firmware. ` +
      `Microcontroller boards: ${idsOf(listBoards(directory))}`,
  );
}

/** A board reached over a serial port (Firmata, the monitor, an agent's attached board): an AVR or a UF2 board. */
export function getSerialBoard(id: string, directory = BOARDS_DIRECTORY): McuBoard | Uf2Board {
  const board = getAnyBoard(id, directory);
  // getBoard says why a Linux or VM board is not one.
  return isUf2Board(board) ? board : getBoard(id, directory);
}

/** A Linux board by id (`rpi-4b`); a microcontroller board's id is an error naming the Linux boards. */
export function getLinuxBoard(id: string, directory = BOARDS_DIRECTORY): LinuxBoard {
  const board = getAnyBoard(id, directory);
  if (isLinuxBoard(board)) return board;
  throw new BoardfleetError(
    'board-wrong-family',
    `"${id}" (${board.name}) is ${isVmBoard(board) ? 'a virtual machine (unikernel recipes build for it)' : 'a microcontroller board'}: Linux images are built for ${idsOf(listLinuxBoards(directory))}`,
  );
}

/** A virtual machine board by id (`vm-x86_64`); another family's id is an error naming the VM boards. */
export function getVmBoard(id: string, directory = BOARDS_DIRECTORY): VmBoard {
  const board = getAnyBoard(id, directory);
  if (isVmBoard(board)) return board;
  throw new BoardfleetError(
    'board-wrong-family',
    `"${id}" (${board.name}) is not a virtual machine: unikernel images are built for ${idsOf(listVmBoards(directory))}`,
  );
}

/** A UF2 board by id (`pico`); another family's id is an error naming the UF2 boards. */
export function getUf2Board(id: string, directory = BOARDS_DIRECTORY): Uf2Board {
  const board = getAnyBoard(id, directory);
  if (isUf2Board(board)) return board;
  throw new BoardfleetError(
    'board-wrong-family',
    `"${id}" (${board.name}) is not flashed through a UF2 drive: UF2 boards are ${idsOf(listUf2Boards(directory))}`,
  );
}

/** A board of any family by id; an unknown id is an error that lists the known ones. */
export function getAnyBoard(id: string, directory = BOARDS_DIRECTORY): AnyBoard {
  const boards = readCatalogue(directory);
  const board = boards.get(id);
  if (!board) {
    throw new BoardfleetError(
      'board-unknown',
      `Unknown board "${id}". Known boards: ${[...boards.keys()].join(', ')} (see "boardfleet boards")`,
    );
  }
  return board;
}

const idsOf = (boards: AnyBoard[]): string => boards.map((board) => board.id).join(', ');

function readCatalogue(directory: string): Map<string, AnyBoard> {
  if (directory === BOARDS_DIRECTORY && catalogue) return catalogue;
  const boards = new Map<string, AnyBoard>();
  for (const fileName of readdirSync(directory)
    .filter((name) => name.endsWith('.yaml'))
    .sort()) {
    for (const board of parseBoardFile(join(directory, fileName))) boards.set(board.id, board);
  }
  if (directory === BOARDS_DIRECTORY) catalogue = boards;
  return boards;
}

/** Reads one board file into the board and its variants; a bad file names itself and every bad field. */
export function parseBoardFile(path: string): AnyBoard[] {
  let document: unknown;
  try {
    document = parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BoardfleetError('board-invalid', `${path} is not valid YAML: ${(error as Error).message}`);
  }
  const parsed = boardFileSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) =>
      issue.path.length === 1 && issue.path[0] === 'family'
        ? 'family: must be "mcu" (a microcontroller board), "linux" (a board that runs a Linux image), "vm" (a virtual machine for unikernel images) or "uf2" (a microcontroller flashed through a UF2 drive)'
        : `${issue.path.join('.') || '(file)'}: ${issue.message}`,
    );
    throw new BoardfleetError(
      'board-invalid',
      `${path} is not a valid board file:\n  ${problems.join('\n  ')}`,
    );
  }
  const expectedId = path
    .split('/')
    .pop()!
    .replace(/\.yaml$/, '');
  if (parsed.data.id !== expectedId) {
    throw new BoardfleetError(
      'board-invalid',
      `${path}: id "${parsed.data.id}" must match the file name ("${expectedId}")`,
    );
  }
  if (parsed.data.family !== 'mcu') return [parsed.data];
  const { variants, ...base } = parsed.data;
  const boards: AnyBoard[] = [withDerivedFields(base)];
  for (const [variantId, variant] of Object.entries(variants ?? {})) {
    boards.push(
      withDerivedFields({
        ...base,
        id: `${base.id}:${variantId}`,
        name: variant.name,
        flash: { ...base.flash, ...variant.flash },
        upload: { ...base.upload, ...variant.upload },
        bootloader: variant.bootloader ?? base.bootloader,
      }),
    );
  }
  return boards;
}

function withDerivedFields(board: Omit<McuBoardFile, 'variants'>): McuBoard {
  if (board.flash.bootloaderSize >= board.flash.size) {
    throw new BoardfleetError('board-invalid', `${board.id}: the bootloader cannot take the whole flash`);
  }
  return { ...board, applicationFlashSize: board.flash.size - board.flash.bootloaderSize };
}

/**
 * Which boards a USB device may be. A genuine board's own id names it; a USB-serial chip
 * (CH340, FT232R, CP210x) sits on many boards and adapters, so it only narrows the choice.
 */
export function boardsForUsbDevice(
  vendorId: number,
  productId: number,
): { kind: 'genuine' | 'clone'; boards: string[] } | undefined {
  const matches = listBoards().flatMap((board) =>
    board.usb
      .filter((device) => device.vendorId === vendorId && device.productId === productId)
      .map((device) => ({ board: board.id, kind: device.kind })),
  );
  if (matches.length === 0) return undefined;
  const genuine = matches.filter((match) => match.kind === 'genuine');
  const chosen = genuine.length > 0 ? genuine : matches;
  return {
    kind: genuine.length > 0 ? 'genuine' : 'clone',
    boards: [...new Set(chosen.map((match) => match.board))],
  };
}
