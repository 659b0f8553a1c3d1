import { SerialPort } from 'serialport';
import { boardsForUsbDevice } from '../../boards/board-catalogue.ts';

/** A serial port as the system lists it, with the boards it most likely is. */
export interface SerialPortInfo {
  path: string;
  manufacturer?: string;
  serialNumber?: string;
  vendorId?: number;
  productId?: number;
  /** From the USB ids: a genuine board names itself; a USB-serial chip narrows it to several. */
  likely?: { kind: 'genuine' | 'clone'; boards: string[] };
}

export type ListedPort = Awaited<ReturnType<typeof SerialPort.list>>[number];

/** The serial ports plugged in now (through udev on Linux), each matched against the board catalogue. */
export async function listSerialPorts(
  list: () => Promise<ListedPort[]> = () => SerialPort.list(),
): Promise<SerialPortInfo[]> {
  return (await list()).map(describePort).sort((a, b) => a.path.localeCompare(b.path));
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

/** "uno", or "nano, uno or mega2560 (USB-serial chip)" for a chip many boards use. */
export function formatLikelyBoard(port: SerialPortInfo): string {
  if (!port.likely) return port.vendorId === undefined ? 'not USB' : 'unknown';
  if (port.likely.kind === 'genuine') return port.likely.boards.join(' or ');
  const boards = port.likely.boards;
  return `${boards.length > 1 ? `${boards.slice(0, -1).join(', ')} or ${boards.at(-1)}` : boards[0]} (USB-serial chip)`;
}
