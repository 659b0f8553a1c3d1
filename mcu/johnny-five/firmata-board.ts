import firmataIo, { type Firmata } from 'firmata-io';
import five, { type Board } from 'johnny-five';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ProbeTransport } from '../probe/probe-board.ts';
import { openSerialTransport } from '../probe/serial-transport.repository.ts';

/** After an Uno's reset and bootloader wait (about 1.5 s), a board that did not announce itself is asked. */
const ASK_VERSION_AFTER_MS = 2500;

export interface OpenFirmataBoardOptions {
  portPath: string;
  /** How long the Firmata handshake may take, the reset on open included. */
  timeoutMs?: number;
  /** Opens the link to the board; defaults to the serial port at Firmata's 57600 baud. */
  openTransport?: (portPath: string) => Promise<ProbeTransport>;
}

export interface FirmataBoard {
  /** A ready johnny-five Board: components created after it (`new five.Led(13)`) attach to it. */
  board: Board;
  portPath: string;
  firmware: string;
  /** Resolves when the port closes without our asking (the board was unplugged). */
  lost: Promise<void>;
  /** Closes the serial port; the board keeps the last pin states it was given. */
  close(): Promise<void>;
}

/**
 * Opens a johnny-five Board on a board running Firmata, over serialport 13 and firmata-io, which
 * report a silent board as one error after `timeoutMs` instead of johnny-five's own advice text.
 * Throws `port-open-failed` when the port cannot be opened, `firmata-no-answer` on no handshake.
 */
export async function openFirmataBoard(options: OpenFirmataBoardOptions): Promise<FirmataBoard> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const transport = await (options.openTransport ?? openSerialTransport)(options.portPath);
  let closing = false;
  const lost = new Promise<void>((resolve) =>
    transport.once('close', () => {
      if (!closing) resolve();
    }),
  );
  const close = async () => {
    closing = true;
    await new Promise<void>((resolve) => transport.close(() => resolve()));
  };
  const io = new firmataIo.Firmata(transport, {
    reportVersionTimeout: Math.min(ASK_VERSION_AFTER_MS, Math.floor(timeoutMs / 2)),
  });
  // A write to a port that is gone; `lost` says so once, the REPL carries on until quit.
  io.on('error', () => {});
  if (!(await handshake(io, timeoutMs))) {
    await close();
    throw new BoardfleetError(
      'firmata-no-answer',
      `No Firmata answer from ${options.portPath} within ${Math.round(timeoutMs / 1000)} s`,
    );
  }
  // The io is ready, so the Board emits "ready" on the next tick; its REPL and Ctrl-C handler
  // stay off, since the caller decides how a session starts and ends.
  const board = new five.Board({ io, repl: false, debug: false, sigint: false });
  await new Promise<void>((resolve) => board.once('ready', () => resolve()));
  const version = io.firmware.version;
  return {
    board,
    portPath: options.portPath,
    firmware: `${io.firmware.name ?? 'unknown firmware'}${version ? ` ${version.major}.${version.minor}` : ''}`,
    lost,
    close,
  };
}

function handshake(io: Firmata, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    io.once('ready', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
