import { SerialPort } from 'serialport';
import type { Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { describePort, formatUsbId, type SerialPortInfo } from '../ports/serial-ports.ts';

type ListedPort = Awaited<ReturnType<typeof SerialPort.list>>[number];

/**
 * `--port auto`: the one plugged-in port whose USB id the board file lists. None or several is
 * an error listing what is plugged in, since guessing could flash the wrong board.
 */
export async function findBoardPort(
  board: Board,
  list: () => Promise<ListedPort[]> = () => SerialPort.list(),
): Promise<string> {
  const ports = (await list()).map(describePort).sort((a, b) => a.path.localeCompare(b.path));
  const matches = ports.filter((port) =>
    board.usb.some((usb) => usb.vendorId === port.vendorId && usb.productId === port.productId),
  );
  if (matches.length === 1) return matches[0]!.path;
  const pluggedIn =
    ports.length > 0 ? ports.map((port) => describe(port, board)).join(', ') : 'no serial ports at all';
  if (matches.length === 0) {
    throw new BoardfleetError(
      'port-not-found',
      `No ${board.name} found: no serial port has one of its USB ids. Plugged in: ${pluggedIn}. ` +
        `Plug the board in, or name its port with --port.`,
    );
  }
  throw new BoardfleetError(
    'port-ambiguous',
    `${matches.length} ports could be ${board.name}: ${matches.map((port) => describe(port, board)).join(', ')}. ` +
      `Say which with --port.`,
  );
}

function describe(port: SerialPortInfo, board: Board): string {
  const usb = board.usb.find(
    (device) => device.vendorId === port.vendorId && device.productId === port.productId,
  );
  const usbId = formatUsbId(port);
  if (usbId === '-') return `${port.path} (not USB)`;
  return `${port.path} (${usbId}${usb ? ` ${usb.description}` : port.manufacturer ? ` ${port.manufacturer}` : ''})`;
}
