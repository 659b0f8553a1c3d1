import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { BoardfleetError } from '../protocol/errors.ts';

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

/** A microcontroller board: what the build, the flasher, `ports` and the simulator need to know. */
export interface McuBoard extends Omit<McuBoardFile, 'variants'> {
  /** `uno`, or `nano:old-bootloader` for a variant. */
  id: string;
  /** Flash a sketch may use: the chip's flash minus the bootloader. */
  applicationFlashSize: number;
}

export type Board = McuBoard;

let catalogue: Map<string, Board> | undefined;

/** Every board type, variants included, read and validated once from `boards/*.yaml`. */
export function listBoards(directory = BOARDS_DIRECTORY): Board[] {
  return [...readCatalogue(directory).values()];
}

/** A board by id (`uno`, `nano:old-bootloader`); an unknown id is an error that lists the known ones. */
export function getBoard(id: string, directory = BOARDS_DIRECTORY): Board {
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

function readCatalogue(directory: string): Map<string, Board> {
  if (directory === BOARDS_DIRECTORY && catalogue) return catalogue;
  const boards = new Map<string, Board>();
  for (const fileName of readdirSync(directory)
    .filter((name) => name.endsWith('.yaml'))
    .sort()) {
    for (const board of parseBoardFile(join(directory, fileName))) boards.set(board.id, board);
  }
  if (directory === BOARDS_DIRECTORY) catalogue = boards;
  return boards;
}

/** Reads one board file into the board and its variants; a bad file names itself and every bad field. */
export function parseBoardFile(path: string): Board[] {
  let document: unknown;
  try {
    document = parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BoardfleetError('board-invalid', `${path} is not valid YAML: ${(error as Error).message}`);
  }
  const parsed = mcuBoardFileSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`,
    );
    throw new BoardfleetError(
      'board-invalid',
      `${path} is not a valid board file:\n  ${problems.join('\n  ')}`,
    );
  }
  const { variants, ...base } = parsed.data;
  const expectedId = path
    .split('/')
    .pop()!
    .replace(/\.yaml$/, '');
  if (base.id !== expectedId) {
    throw new BoardfleetError(
      'board-invalid',
      `${path}: id "${base.id}" must match the file name ("${expectedId}")`,
    );
  }
  const boards = [withDerivedFields(base)];
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

function withDerivedFields(board: Omit<McuBoardFile, 'variants'>): Board {
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
