import { SerialPort } from 'serialport';
import {
  type Board,
  boardsForUsbDevice,
  isUf2Board,
  listUf2Boards,
  type Uf2Board,
} from '../../boards/board-catalogue.ts';
import { listRunningBenches, type RunningBench } from '../simulator/simulated-board.ts';

/** A serial port as the system lists it, with the boards it most likely is. */
export interface SerialPortInfo {
  path: string;
  manufacturer?: string;
  serialNumber?: string;
  vendorId?: number;
  productId?: number;
  /**
   * From the USB ids: a genuine board names itself; a USB-serial chip narrows it to several. A UF2
   * board's id also says what answers: its boot ROM's drive or its firmware's serial port.
   */
  likely?: { kind: 'genuine' | 'clone'; boards: string[]; role?: Uf2UsbRole };
  /** A simulated bench board (`boardfleet bench start`): it has no USB ids, but its board is known. */
  bench?: { board: string; pid: number; stateDir: string };
}

export type ListedPort = Awaited<ReturnType<typeof SerialPort.list>>[number];

export type Uf2UsbRole = Uf2Board['usb'][number]['role'];

/** The serial ports plugged in now (through udev on Linux), each matched against the board catalogue. */
export async function listSerialPorts(
  list: () => Promise<ListedPort[]> = () => SerialPort.list(),
): Promise<SerialPortInfo[]> {
  return (await list()).map(describePort).sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * Every port a board can be reached on: the serial ports plugged in, then the simulated bench
 * boards running in the default bench directories (their pty is not a USB device, so the system
 * lists none of them).
 */
export async function listBoardPorts(
  sources: { list?: () => Promise<ListedPort[]>; benches?: () => Promise<RunningBench[]> } = {},
): Promise<SerialPortInfo[]> {
  const [plugged, benches] = await Promise.all([
    listSerialPorts(sources.list),
    (sources.benches ?? (() => listRunningBenches()))(),
  ]);
  const known = new Set(plugged.map((port) => port.path));
  const simulated = benches
    .filter((bench) => bench.board !== undefined && !known.has(bench.portPath))
    .map((bench) => ({
      path: bench.portPath,
      bench: { board: bench.board!, pid: bench.pid, stateDir: bench.stateDir },
    }));
  return [...plugged, ...simulated];
}

/**
 * Whether a port can be `board`: one of its USB ids, or a bench board started as it or as another
 * variant of it. Variants share their USB ids (a Nano's bootloader is not written on its chip), so
 * a simulated `nano:old-bootloader` is a `nano` as much as a plugged-in one would be.
 */
export function portMatchesBoard(port: SerialPortInfo, board: Board | Uf2Board): boolean {
  if (port.bench) return baseBoardId(port.bench.board) === baseBoardId(board.id);
  // A UF2 board's boot ROM drive is a disk, not a serial port: only its firmware's id counts.
  const serialIds = isUf2Board(board) ? board.usb.filter((usb) => usb.role === 'firmware-serial') : board.usb;
  return serialIds.some((usb) => usb.vendorId === port.vendorId && usb.productId === port.productId);
}

/** `nano` for `nano:old-bootloader`: the board a variant belongs to. */
export function baseBoardId(boardId: string): string {
  return boardId.split(':')[0]!;
}

export function describePort(port: ListedPort): SerialPortInfo {
  // The bindings give USB ids as hex strings ("2341"), absent for ports that are not USB.
  const vendorId = port.vendorId ? Number.parseInt(port.vendorId, 16) : undefined;
  const productId = port.productId ? Number.parseInt(port.productId, 16) : undefined;
  const likely =
    vendorId !== undefined && productId !== undefined
      ? (boardsForUsbDevice(vendorId, productId) ?? uf2BoardsForUsbDevice(vendorId, productId))
      : undefined;
  return {
    path: port.path,
    ...(port.manufacturer ? { manufacturer: port.manufacturer } : {}),
    ...(port.serialNumber ? { serialNumber: port.serialNumber } : {}),
    ...(vendorId !== undefined ? { vendorId } : {}),
    ...(productId !== undefined ? { productId } : {}),
    ...(likely ? { likely } : {}),
  };
}

/** The UF2 boards (the Pico) a USB id is, and as what: the ids are Raspberry Pi's own, so genuine. */
export function uf2BoardsForUsbDevice(vendorId: number, productId: number): SerialPortInfo['likely'] {
  const matches = listUf2Boards().flatMap((board) =>
    board.usb
      .filter((device) => device.vendorId === vendorId && device.productId === productId)
      .map((device) => ({ board: board.id, role: device.role })),
  );
  if (matches.length === 0) return undefined;
  return { kind: 'genuine', boards: matches.map((match) => match.board), role: matches[0]!.role };
}

export function formatUsbId(port: Pick<SerialPortInfo, 'vendorId' | 'productId'>): string {
  if (port.vendorId === undefined || port.productId === undefined) return '-';
  const hex = (value: number) => value.toString(16).padStart(4, '0');
  return `${hex(port.vendorId)}:${hex(port.productId)}`;
}

/**
 * "uno", "pico (firmware serial)", "nano, uno or mega2560 (USB-serial chip)" for a chip many boards
 * use, "uno (simulated)" for a bench board.
 */
export function formatLikelyBoard(port: SerialPortInfo): string {
  if (port.bench) return `${port.bench.board} (simulated)`;
  if (!port.likely) return port.vendorId === undefined ? 'not USB' : 'unknown';
  if (port.likely.kind === 'genuine') {
    const role = port.likely.role ? ` (${port.likely.role.replace('-', ' ')})` : '';
    return `${port.likely.boards.join(' or ')}${role}`;
  }
  const boards = port.likely.boards;
  return `${boards.length > 1 ? `${boards.slice(0, -1).join(', ')} or ${boards.at(-1)}` : boards[0]} (USB-serial chip)`;
}

/** Where our firmware speaks Firmata on a UF2 board, for messages that send the user to it. */
export function uf2FirmataWiring(board: Uf2Board): string {
  const { uart, txPin, rxPin, baudRate } = board.serial;
  return `our firmware also talks Firmata on UART${uart} (GP${txPin} TX, GP${rxPin} RX) at ${baudRate} baud`;
}

/**
 * After a UF2 board was flashed: the first of its firmware ports that was not plugged in before
 * (`known`, the paths listed then), once it appears; undefined after `timeoutMs`.
 */
export async function waitForUf2FirmwarePort(
  board: Uf2Board,
  options: {
    known: ReadonlySet<string>;
    timeoutMs: number;
    list?: () => Promise<ListedPort[]>;
    signal?: AbortSignal;
  },
): Promise<string | undefined> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    options.signal?.throwIfAborted();
    const fresh = (await listSerialPorts(options.list)).find(
      (port) => portMatchesBoard(port, board) && !options.known.has(port.path),
    );
    if (fresh) return fresh.path;
    if (performance.now() >= deadline) return undefined;
    // udev lists a new USB device within a few hundred milliseconds of its enumeration.
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The paths of the serial ports plugged in now, to tell a port that appears later. */
export async function pluggedPortPaths(list?: () => Promise<ListedPort[]>): Promise<Set<string>> {
  return new Set((await listSerialPorts(list)).map((port) => port.path));
}
