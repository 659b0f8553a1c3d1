import { type Board, getSerialBoard, type Uf2Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  baseBoardId,
  formatLikelyBoard,
  formatUsbId,
  type ListedPort,
  listBoardPorts,
  portMatchesBoard,
  type SerialPortInfo,
} from '../ports/serial-ports.ts';
import type { RunningBench } from '../simulator/simulated-board.ts';

export interface FindPortOptions {
  /** The plugged-in ports (`SerialPort.list()` unless a test says otherwise). */
  list?: () => Promise<ListedPort[]>;
  /** The running bench boards (the default bench directories unless a test says otherwise). */
  benches?: () => Promise<RunningBench[]>;
  /** Told when no hardware matched and a simulated board was picked instead, so the user knows. */
  onNotice?: (line: string) => void;
}

/** The port `--port auto` settled on, and what to tell the user when it is a simulated board. */
export interface PortChoice {
  path: string;
  notice?: string;
}

/**
 * `--port auto` for a board: the one plugged-in port whose USB id the board file lists; when no
 * hardware matches, the one running bench board of that board. None or several is an error
 * listing what is there, since guessing could flash the wrong board.
 */
export async function findBoardPort(board: Board | Uf2Board, options: FindPortOptions = {}): Promise<string> {
  return announce(chooseBoardPort(await listBoardPorts(options), board), options);
}

/**
 * `--port auto` when no board is named (the serial monitor, the probe): the one plugged-in port
 * whose USB id is a known board's, else the one running bench board.
 */
export async function findAnyBoardPort(options: FindPortOptions = {}): Promise<string> {
  return announce(chooseAnyBoardPort(await listBoardPorts(options)), options);
}

/** `--port P|auto`: P as given, or found as `auto` finds `board` (any known board, without one). */
export function resolvePort(
  port: string,
  board?: Board | Uf2Board,
  options: FindPortOptions = {},
): Promise<string> {
  if (port !== 'auto') return Promise.resolve(port);
  return board ? findBoardPort(board, options) : findAnyBoardPort(options);
}

/**
 * The LED pin of the board on `portPath`, when it is known: a bench board's, or that of the one
 * board its USB id names. The Firmata self-test toggles it (pin 13 on the Uno, GP25 on the Pico).
 */
export async function ledPinOfPort(
  portPath: string,
  options: FindPortOptions = {},
): Promise<number | undefined> {
  const port = (await listBoardPorts(options)).find((candidate) => candidate.path === portPath);
  const boardId =
    port?.bench?.board ?? (port?.likely?.boards.length === 1 ? port.likely.boards[0] : undefined);
  return boardId === undefined ? undefined : getSerialBoard(boardId).ledPin;
}

export function chooseBoardPort(ports: SerialPortInfo[], board: Board | Uf2Board): PortChoice {
  const hardware = ports.filter((port) => !port.bench && portMatchesBoard(port, board));
  if (hardware.length === 1) return { path: hardware[0]!.path };
  if (hardware.length > 1) throw ambiguous(hardware, board.name, board);
  const benches = preferExactVariant(
    ports.filter((port) => port.bench && portMatchesBoard(port, board)),
    board.id,
  );
  if (benches.length === 1) {
    const bench = benches[0]!;
    return {
      path: bench.path,
      notice: `No ${board.id} plugged in; using the simulated ${bench.bench!.board} at ${bench.path}`,
    };
  }
  if (benches.length > 1) throw ambiguous(benches, board.name, board);
  throw new BoardfleetError(
    'port-not-found',
    `No ${board.name} found: no serial port has one of its USB ids and no simulated ${baseBoardId(board.id)} runs. ` +
      `Plugged in: ${pluggedIn(ports, board)}. Plug the board in, or name its port with --port.`,
  );
}

export function chooseAnyBoardPort(ports: SerialPortInfo[]): PortChoice {
  const hardware = ports.filter((port) => !port.bench && port.likely);
  if (hardware.length === 1) return { path: hardware[0]!.path };
  if (hardware.length > 1) throw ambiguous(hardware, 'a board');
  const benches = ports.filter((port) => port.bench);
  if (benches.length === 1) {
    const bench = benches[0]!;
    return {
      path: bench.path,
      notice: `No board plugged in; using the simulated ${bench.bench!.board} at ${bench.path}`,
    };
  }
  if (benches.length > 1) throw ambiguous(benches, 'a board');
  throw new BoardfleetError(
    'port-not-found',
    `No board found: no serial port has a known board's USB id and no simulated board runs. ` +
      `Plugged in: ${pluggedIn(ports)}. Plug a board in, start a simulated one (boardfleet bench start uno), ` +
      `or name the port with --port.`,
  );
}

function announce(choice: PortChoice, options: FindPortOptions): string {
  if (choice.notice) options.onNotice?.(choice.notice);
  return choice.path;
}

/** Several bench boards of one board: the one started as exactly the variant asked for, if only one is. */
function preferExactVariant(benches: SerialPortInfo[], boardId: string): SerialPortInfo[] {
  const exact = benches.filter((port) => port.bench!.board === boardId);
  return exact.length === 1 ? exact : benches;
}

function ambiguous(ports: SerialPortInfo[], what: string, board?: Board | Uf2Board): BoardfleetError {
  return new BoardfleetError(
    'port-ambiguous',
    `${ports.length} ports could be ${what}: ${ports.map((port) => describe(port, board)).join(', ')}. ` +
      `Say which with --port.`,
  );
}

function pluggedIn(ports: SerialPortInfo[], board?: Board | Uf2Board): string {
  return ports.length > 0 ? ports.map((port) => describe(port, board)).join(', ') : 'no serial ports at all';
}

function describe(port: SerialPortInfo, board?: Board | Uf2Board): string {
  if (port.bench) return `${port.path} (simulated ${port.bench.board})`;
  const usb = board?.usb.find(
    (device) => device.vendorId === port.vendorId && device.productId === port.productId,
  );
  const usbId = formatUsbId(port);
  if (usbId === '-') return `${port.path} (not USB)`;
  // Named for the board asked for, or for what it likely is when any board will do.
  const label = board || !port.likely ? (usb?.description ?? port.manufacturer) : formatLikelyBoard(port);
  return `${port.path} (${usbId}${label ? ` ${label}` : ''})`;
}
