import { setTimeout as sleep } from 'node:timers/promises';
import { SerialPort } from 'serialport';
import { type Board, getBoard, listBoards } from '../../boards/board-catalogue.ts';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import { Avr109Protocol, touchAt1200Baud, waitForBootloaderPort } from './avr109.ts';
import {
  type BootloaderProtocol,
  BootloaderNoAnswerError,
  BootloaderReplyError,
  hexBytes,
  type ProtocolName,
  type Signature,
} from './bootloader-protocol.ts';
import { assertImageFits, type FirmwareImage, loadHexFile } from './intel-hex.ts';
import { mcuForSignature } from './mcu-signatures.ts';
import {
  LinkLostError,
  LinkTimeoutError,
  type OpenLink,
  openSerialPortLink,
  type SerialLink,
} from './serial-link.ts';
import { Stk500v1Protocol } from './stk500v1.ts';
import { Stk500v2Protocol } from './stk500v2.ts';

export type FlashPhase = 'sync' | 'write' | 'verify';

export interface FlashProgress {
  phase: FlashPhase;
  /** Bytes written or verified so far; for `sync`, 0 until the bootloader answers, then 1. */
  done: number;
  total: number;
}

export interface FlashOptions {
  board: Board | string;
  portPath: string;
  hexPath?: string;
  image?: FirmwareImage;
  onProgress?: (progress: FlashProgress) => void;
  signal?: AbortSignal;
  /** How ports are opened; the real serial port unless a test passes a bootloader double. */
  openLink?: OpenLink;
  /** How ports are listed, to find the bootloader's port after a 1200-baud touch. */
  listPorts?: () => Promise<Array<{ path: string }>>;
  syncAttempts?: number;
  /** How long to wait for the bootloader's port after a 1200-baud touch. */
  portWaitMs?: number;
}

export interface FlashResult {
  board: string;
  /** The port the bootloader answered on: after a 1200-baud touch, not the one asked for. */
  portPath: string;
  protocol: ProtocolName;
  mcu: string;
  signature: string;
  /** Whole pages written, so at least the image size. */
  bytesWritten: number;
  pages: number;
  durationMs: number;
  bytesPerSecond: number;
  /** Bytes read back from the chip and found equal to what was written. */
  bytesVerified: number;
  /** Kept for scripts reading `--json`: a flash that returns was verified (a mismatch throws). */
  verified: true;
  /**
   * The board's other bootloader answered when the one asked for did not (a Nano's label does not
   * say which it has): `board` is then that variant, and this says so.
   */
  bootloaderFallback?: string;
}

const DEFAULT_SYNC_ATTEMPTS = 10;

/**
 * Flashes an image (or a .hex file) through the board's bootloader: reset into it, sync, check
 * the chip's signature, write every page, read every byte back, then start the sketch.
 * Every failure is a `BoardfleetError` saying what to do; a failed flash can simply be redone.
 */
export async function flashBoard(options: FlashOptions): Promise<FlashResult> {
  const board = typeof options.board === 'string' ? getBoard(options.board) : options.board;
  try {
    return await flashThrough(board, options);
  } catch (error) {
    const other = otherBootloader(board);
    if (!other || !isBoardfleetError(error) || error.code !== 'bootloader-no-answer') throw error;
    options.signal?.throwIfAborted();
    const result = await flashThrough(other, options).catch(() => Promise.reject(error));
    return {
      ...result,
      bootloaderFallback:
        `No answer at ${board.upload.baudRate} baud; ${other.name} answered at ${other.upload.baudRate} baud. ` +
        `Next time flash it with --board ${other.id}.`,
    };
  }
}

/**
 * The same board with its other bootloader on the same protocol at another speed (`nano` and
 * `nano:old-bootloader`), or null when it has none: tried when the one asked for does not answer.
 */
function otherBootloader(board: Board): Board | null {
  const base = board.id.split(':')[0];
  return (
    listBoards().find(
      (candidate) =>
        candidate.id !== board.id &&
        candidate.id.split(':')[0] === base &&
        candidate.upload.protocol === board.upload.protocol &&
        candidate.upload.baudRate !== board.upload.baudRate,
    ) ?? null
  );
}

async function flashThrough(board: Board, options: FlashOptions): Promise<FlashResult> {
  const started = performance.now();
  const openLink = options.openLink ?? openSerialPortLink;
  const image = options.image ?? (await loadHexFile(requiredHexPath(options), board));
  assertImageFits(image, board, options.hexPath);
  if (image.dataBytes === 0) {
    throw new BoardfleetError('hex-corrupt', `${options.hexPath ?? 'The firmware'} holds no data to flash`);
  }
  const pageSize = board.flash.pageSize;
  const pages = Math.ceil(image.bytes.length / pageSize);
  const padded = new Uint8Array(pages * pageSize).fill(0xff);
  padded.set(image.bytes);

  let portPath = options.portPath;
  if (board.upload.reset === '1200-baud-touch') {
    portPath = await resetBy1200BaudTouch(portPath, openLink, options);
  }
  options.signal?.throwIfAborted();
  const link = await openLink(portPath, board.upload.baudRate);
  const step = { doing: 'syncing with the bootloader' };
  try {
    if (board.upload.reset === 'dtr-rts-pulse') await pulseReset(link);
    const protocol = createProtocol(board, link);
    options.onProgress?.({ phase: 'sync', done: 0, total: 1 });
    await protocol.sync(options.syncAttempts ?? DEFAULT_SYNC_ATTEMPTS);
    options.onProgress?.({ phase: 'sync', done: 1, total: 1 });

    step.doing = 'reading the signature';
    const signature = await protocol.readSignature();
    assertSignature(signature, board, portPath);

    for (let page = 0; page < pages; page++) {
      step.doing = `writing page ${page + 1} of ${pages} (address 0x${hex(page * pageSize, 4)})`;
      throwIfAborted(options.signal, step.doing);
      await protocol.writePage(page * pageSize, padded.subarray(page * pageSize, (page + 1) * pageSize));
      options.onProgress?.({ phase: 'write', done: (page + 1) * pageSize, total: padded.length });
    }
    let bytesVerified = 0;
    for (let page = 0; page < pages; page++) {
      step.doing = `verifying page ${page + 1} of ${pages} (address 0x${hex(page * pageSize, 4)})`;
      throwIfAborted(options.signal, step.doing);
      const read = await protocol.readPage(page * pageSize, pageSize);
      assertPageMatches(read, padded, page, pages, pageSize, portPath);
      bytesVerified += read.length;
      options.onProgress?.({ phase: 'verify', done: (page + 1) * pageSize, total: padded.length });
    }
    step.doing = 'leaving the bootloader';
    await protocol.leave();

    const durationMs = performance.now() - started;
    return {
      board: board.id,
      portPath,
      protocol: protocol.name,
      mcu: board.mcu,
      signature: hexBytes(signature),
      bytesWritten: padded.length,
      pages,
      durationMs,
      bytesPerSecond: padded.length / (durationMs / 1000),
      bytesVerified,
      verified: true,
    };
  } catch (error) {
    throw explain(error, { board, portPath, doing: step.doing });
  } finally {
    await link.close().catch(() => undefined);
  }
}

function requiredHexPath(options: FlashOptions): string {
  if (options.hexPath === undefined) throw new TypeError('flashBoard needs hexPath or image');
  return options.hexPath;
}

function createProtocol(board: Board, link: SerialLink): BootloaderProtocol {
  switch (board.upload.protocol) {
    case 'stk500v1':
      return new Stk500v1Protocol(link);
    case 'stk500v2':
      return new Stk500v2Protocol(link, board.flash.size);
    case 'avr109':
      return new Avr109Protocol(link);
  }
}

/**
 * DTR/RTS reach the MCU's reset pin through a capacitor: dropping them and raising them again
 * gives the reset pulse, and the bootloader listens for about a second afterwards.
 */
async function pulseReset(link: SerialLink): Promise<void> {
  try {
    await link.setSignals({ dtr: false, rts: false });
    await sleep(250);
    await link.setSignals({ dtr: true, rts: true });
  } catch (error) {
    // A pty (simulated board, serial-over-network) has no modem lines to pulse; sync decides.
    if (error instanceof LinkLostError) throw error;
  }
  await sleep(50);
  await link.flushInput();
}

async function resetBy1200BaudTouch(
  portPath: string,
  openLink: OpenLink,
  options: FlashOptions,
): Promise<string> {
  const listPorts = options.listPorts ?? (() => SerialPort.list());
  const before = (await listPorts()).map((port) => port.path);
  await touchAt1200Baud(portPath, openLink);
  // No new port: the board may already be in its bootloader on the port we were given.
  return (
    (await waitForBootloaderPort(portPath, before, {
      listPorts,
      ...(options.portWaitMs !== undefined ? { timeoutMs: options.portWaitMs } : {}),
    })) ?? portPath
  );
}

function assertSignature(signature: Signature, board: Board, portPath: string): void {
  if (signature.every((value, index) => value === board.signature[index])) return;
  const found = mcuForSignature(signature) ?? 'an MCU boardfleet does not know';
  throw new BoardfleetError(
    'signature-mismatch',
    `Wrong chip on ${portPath}: it reports signature ${hexBytes(signature)} (${found}), but ${board.name} has an ` +
      `${board.mcu} (${hexBytes(board.signature)}). Pick the --board that matches (see "boardfleet boards").`,
  );
}

function assertPageMatches(
  read: Uint8Array,
  expected: Uint8Array,
  page: number,
  pages: number,
  pageSize: number,
  portPath: string,
): void {
  for (let i = 0; i < pageSize; i++) {
    const address = page * pageSize + i;
    if (read[i] === expected[address]) continue;
    throw new BoardfleetError(
      'verify-failed',
      `Verify failed on ${portPath}: the page at 0x${hex(page * pageSize, 4)} (page ${page + 1} of ${pages}) ` +
        `reads 0x${hex(read[i] ?? 0)} at 0x${hex(address, 4)}, expected 0x${hex(expected[address]!)}. ` +
        `The write did not take; flash again, ` +
        `and if it fails at the same address the chip's flash may be worn.`,
    );
  }
}

function throwIfAborted(signal: AbortSignal | undefined, doing: string): void {
  if (!signal?.aborted) return;
  throw new BoardfleetError(
    'flash-aborted',
    `Flashing was cancelled before ${doing}; the sketch on the board is incomplete until it is flashed again`,
  );
}

/** Turns what went wrong on the wire into an error naming the port, the board and the step. */
function explain(error: unknown, context: { board: Board; portPath: string; doing: string }): unknown {
  const { board, portPath, doing } = context;
  const { baudRate, protocol } = board.upload;
  if (error instanceof BootloaderNoAnswerError) {
    return new BoardfleetError(
      'bootloader-no-answer',
      `No answer from the bootloader on ${portPath} at ${baudRate} baud after ${error.attempts} attempts ` +
        `(board: ${board.name}, ${protocol}). ${noAnswerHint(board)}`,
      { cause: error },
    );
  }
  if (error instanceof LinkLostError) {
    return new BoardfleetError(
      'port-lost',
      `${portPath} went away while ${doing}: was the board unplugged or reset? ` +
        `The bootloader is untouched; plug it back in and flash again.`,
      { cause: error },
    );
  }
  if (error instanceof LinkTimeoutError) {
    return new BoardfleetError(
      'bootloader-timeout',
      `The bootloader on ${portPath} stopped answering while ${doing}. Flash again; if it keeps happening, ` +
        `try another USB cable or port.`,
      { cause: error },
    );
  }
  if (error instanceof BootloaderReplyError) {
    return new BoardfleetError(
      'bootloader-bad-reply',
      `The bootloader on ${portPath} gave an unexpected answer while ${doing} (${error.message}). ` +
        `Is it really ${article(shortName(board))} (${protocol})?`,
      { cause: error },
    );
  }
  return error;
}

const BOOTLOADER_NAMES: Record<string, string> = {
  optiboot: 'optiboot',
  atmegaboot: 'ATmegaBOOT',
  stk500v2: 'the STK500v2 bootloader',
  caterina: 'Caterina',
};

function noAnswerHint(board: Board): string {
  const bootloader = BOOTLOADER_NAMES[board.bootloader.split('-')[0]!] ?? board.bootloader;
  const question = `Is it ${article(shortName(board))} with ${bootloader}?`;
  if (board.id === 'nano:old-bootloader') return `${question} For a Nano made since 2018 try --board nano.`;
  if (board.upload.protocol === 'stk500v1' && bootloader === 'optiboot') {
    return `${question} For an old Nano try --board nano:old-bootloader.`;
  }
  if (board.upload.reset === '1200-baud-touch') {
    return `${question} If its sketch has hung USB, press reset twice quickly and flash within 8 s.`;
  }
  return `${question} If nothing resets it (no DTR wire), press reset just before flashing.`;
}

function shortName(board: Board): string {
  return board.name.replace(/^Arduino /, '');
}

function article(name: string): string {
  return `${/^[AEIOU]/i.test(name) ? 'an' : 'a'} ${name}`;
}

function hex(value: number, digits = 2): string {
  return value.toString(16).toUpperCase().padStart(digits, '0');
}
