import type { Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError, type ErrorCode } from '../../protocol/errors.ts';
import { formatUsbId, portMatchesBoard, type SerialPortInfo } from '../ports/serial-ports.ts';
import type { FlashResult } from './flash-board.ts';

/** One port's line in a flash station's report (`flash --all --json` prints an array of them). */
export type StationOutcome =
  | {
      /** The port flashed, as listed; `result.portPath` is where the bootloader answered. */
      port: string;
      board: string;
      verified: true;
      /** Whole pages written and read back. */
      bytes: number;
      seconds: number;
      /** What `flash --json` prints for a single port. */
      result: FlashResult;
    }
  | { port: string; board: string; verified: false; code: ErrorCode | 'unexpected'; error: string };

/** Flashes one port; the station calls it once per port, all at once. */
export type FlashOnePort = (port: string, signal: AbortSignal) => Promise<FlashResult>;

/**
 * The ports `flash --all` writes: every plugged-in port with one of the board's USB ids, and
 * every bench board started as it. None is an error listing what there is, so a typo in
 * `--board` does not look like an empty success.
 */
export function stationPorts(ports: SerialPortInfo[], board: Board): string[] {
  const matching = ports.filter((port) => portMatchesBoard(port, board)).map((port) => port.path);
  if (matching.length > 0) return matching;
  const present = ports.length > 0 ? ports.map(describePort).join(', ') : 'no serial ports at all';
  throw new BoardfleetError(
    'port-not-found',
    `No ${board.name} to flash: no serial port has one of its USB ids and no bench board runs as ` +
      `${board.id}. Plugged in: ${present}.`,
  );
}

/**
 * Flashes every port at once. Each port's failure (busy, unplugged, a verify mismatch) is that
 * port's outcome and never stops the others; aborting `signal` stops them all between pages.
 * Boards reset by a 1200-baud touch go one after another: each finds its bootloader as the port
 * that appears after its touch, and two touched together would take each other's.
 */
export async function flashStation(options: {
  ports: string[];
  board: Board;
  flash: FlashOnePort;
  signal?: AbortSignal;
}): Promise<StationOutcome[]> {
  const signal = options.signal ?? new AbortController().signal;
  const flashPort = async (port: string): Promise<StationOutcome> => {
    try {
      const result = await options.flash(port, signal);
      return {
        port,
        board: options.board.id,
        verified: true,
        bytes: result.bytesWritten,
        seconds: Math.round(result.durationMs / 10) / 100,
        result,
      };
    } catch (error) {
      return { port, board: options.board.id, verified: false, ...reasonOf(error) };
    }
  };
  if (options.board.upload.reset !== '1200-baud-touch') return Promise.all(options.ports.map(flashPort));
  const outcomes: StationOutcome[] = [];
  for (const port of options.ports) outcomes.push(await flashPort(port));
  return outcomes;
}

/** The reason a port failed, on one line: reports are read one line per port. */
export function reasonOf(error: unknown): { code: ErrorCode | 'unexpected'; error: string } {
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();
  if (error instanceof BoardfleetError) return { code: error.code, error: oneLine(error.message) };
  return { code: 'unexpected', error: oneLine(error instanceof Error ? error.message : String(error)) };
}

function describePort(port: SerialPortInfo): string {
  if (port.bench) return `${port.path} (bench ${port.bench.board})`;
  const usbId = formatUsbId(port);
  return usbId === '-' ? `${port.path} (not USB)` : `${port.path} (${usbId})`;
}
