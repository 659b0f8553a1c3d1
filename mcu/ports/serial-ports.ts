import { SerialPort } from 'serialport';
import { type Board, boardsForUsbDevice } from '../../boards/board-catalogue.ts';
import { listRunningBenches, type RunningBench } from '../simulator/simulated-board.ts';

/** A serial port as the system lists it, with the boards it most likely is. */
export interface SerialPortInfo {
  path: string;
  manufacturer?: string;
  serialNumber?: string;
  vendorId?: number;
  productId?: number;
  /** From the USB ids: a genuine board names itself; a USB-serial chip narrows it to several. */
  likely?: { kind: 'genuine' | 'clone'; boards: string[] };
  /** A simulated bench board (`boardfleet bench start`): it has no USB ids, but its board is known. */
  bench?: { board: string; pid: number; stateDir: string };
}

export type ListedPort = Awaited<ReturnType<typeof SerialPort.list>>[number];

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
export function portMatchesBoard(port: SerialPortInfo, board: Board): boolean {
  if (port.bench) return baseBoardId(port.bench.board) === baseBoardId(board.id);
  return board.usb.some((usb) => usb.vendorId === port.vendorId && usb.productId === port.productId);
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
    vendorId !== undefined && productId !== undefined ? boardsForUsbDevice(vendorId, productId) : undefined;
  return {
    path: port.path,
    ...(port.manufacturer ? { manufacturer: port.manufacturer } : {}),
    ...(port.serialNumber ? { serialNumber: port.serialNumber } : {}),
    ...(vendorId !== undefined ? { vendorId } : {}),
    ...(productId !== undefined ? { productId } : {}),
    ...(likely ? { likely } : {}),
  };
}

export function formatUsbId(port: SerialPortInfo): string {
  if (port.vendorId === undefined || port.productId === undefined) return '-';
  const hex = (value: number) => value.toString(16).padStart(4, '0');
  return `${hex(port.vendorId)}:${hex(port.productId)}`;
}

/** "uno", "nano, uno or mega2560 (USB-serial chip)" for a chip many boards use, "uno (simulated)" for a bench board. */
export function formatLikelyBoard(port: SerialPortInfo): string {
  if (port.bench) return `${port.bench.board} (simulated)`;
  if (!port.likely) return port.vendorId === undefined ? 'not USB' : 'unknown';
  if (port.likely.kind === 'genuine') return port.likely.boards.join(' or ');
  const boards = port.likely.boards;
  return `${boards.length > 1 ? `${boards.slice(0, -1).join(', ')} or ${boards.at(-1)}` : boards[0]} (USB-serial chip)`;
}
