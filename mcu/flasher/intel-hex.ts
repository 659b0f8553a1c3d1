import { readFile } from 'node:fs/promises';
import type { Board } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

/** What goes into flash: one contiguous run of bytes from address 0, gaps filled with 0xFF (erased flash). */
export interface FirmwareImage {
  bytes: Uint8Array;
  /** Bytes the hex file actually defined (less than `bytes.length` when it has gaps). */
  dataBytes: number;
}

const RecordType = {
  data: 0x00,
  endOfFile: 0x01,
  extendedSegmentAddress: 0x02,
  startSegmentAddress: 0x03,
  extendedLinearAddress: 0x04,
  startLinearAddress: 0x05,
} as const;

/** avr-objcopy never writes past the largest AVR flash (256 KiB); anything far beyond is not firmware. */
const MAX_IMAGE_SIZE = 16 * 1024 * 1024;

/**
 * Parses Intel HEX into a flash image. Every line is checked (start code, hex digits, byte
 * count, checksum, record type, addresses); an error names the line and what is wrong.
 */
export function parseIntelHex(text: string, source = 'hex file'): FirmwareImage {
  const chunks: Array<{ address: number; data: Uint8Array; line: number }> = [];
  let base = 0;
  let endOfFileLine = 0;
  const lines = text.split(/\r?\n/);
  for (const [index, rawLine] of lines.entries()) {
    const lineNumber = index + 1;
    const line = rawLine.trim();
    if (line === '') continue;
    const corrupt = (what: string) =>
      new BoardfleetError(
        'hex-corrupt',
        `${source} line ${lineNumber}: ${what}; rebuild the firmware or fetch the file again`,
      );
    if (endOfFileLine) throw corrupt(`data after the end-of-file record on line ${endOfFileLine}`);
    if (!line.startsWith(':')) throw corrupt(`does not start with ":"`);
    const hex = line.slice(1);
    if (!/^[0-9A-Fa-f]*$/.test(hex)) throw corrupt('holds characters that are not hex digits');
    if (hex.length % 2 !== 0) throw corrupt('has an odd number of hex digits');
    if (hex.length < 10)
      throw corrupt(`is too short for a record (${hex.length / 2} bytes, at least 5 needed)`);
    const bytes = Uint8Array.from(hex.match(/../g)!, (pair) => Number.parseInt(pair, 16));
    const byteCount = bytes[0]!;
    if (bytes.length !== byteCount + 5) {
      throw corrupt(`byte count says ${byteCount} data bytes but the record holds ${bytes.length - 5}`);
    }
    const sum = bytes.reduce((total, value) => total + value, 0) & 0xff;
    if (sum !== 0) {
      const stored = bytes.at(-1)!;
      const expected = (stored - sum) & 0xff;
      throw corrupt(`checksum is 0x${toHex(stored)} but the record adds up to 0x${toHex(expected)}`);
    }
    const offset = (bytes[1]! << 8) | bytes[2]!;
    const type = bytes[3]!;
    const data = bytes.subarray(4, 4 + byteCount);
    const expectLength = (length: number, name: string) => {
      if (byteCount !== length) throw corrupt(`${name} record must hold ${length} bytes, not ${byteCount}`);
    };
    switch (type) {
      case RecordType.data:
        if (offset + byteCount > 0x10000) {
          throw corrupt(`data at offset 0x${toHex(offset, 4)} runs past the end of its 64 KiB segment`);
        }
        chunks.push({ address: base + offset, data, line: lineNumber });
        break;
      case RecordType.endOfFile:
        expectLength(0, 'an end-of-file');
        endOfFileLine = lineNumber;
        break;
      case RecordType.extendedSegmentAddress:
        expectLength(2, 'an extended segment address');
        base = ((data[0]! << 8) | data[1]!) * 16;
        break;
      case RecordType.extendedLinearAddress:
        expectLength(2, 'an extended linear address');
        base = ((data[0]! << 8) | data[1]!) * 0x10000;
        break;
      // Entry points mean nothing to an AVR, which always starts at its reset vector.
      case RecordType.startSegmentAddress:
      case RecordType.startLinearAddress:
        expectLength(4, 'a start address');
        break;
      default:
        throw corrupt(`unknown record type 0x${toHex(type)}`);
    }
  }
  if (!endOfFileLine) {
    throw new BoardfleetError(
      'hex-corrupt',
      `${source} has no end-of-file record: it was cut short; rebuild the firmware or fetch the file again`,
    );
  }
  const end = Math.max(0, ...chunks.map((chunk) => chunk.address + chunk.data.length));
  if (end > MAX_IMAGE_SIZE) {
    throw new BoardfleetError(
      'hex-corrupt',
      `${source} puts data at address 0x${end.toString(16)}, beyond any AVR flash: it is not a sketch for a board`,
    );
  }
  const bytes = new Uint8Array(end).fill(0xff);
  const writtenBy = new Int32Array(end);
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.data.length; i++) {
      const address = chunk.address + i;
      if (writtenBy[address]) {
        throw new BoardfleetError(
          'hex-corrupt',
          `${source} line ${chunk.line}: address 0x${toHex(address, 4)} was already set by line ${writtenBy[address]}; rebuild the firmware or fetch the file again`,
        );
      }
      writtenBy[address] = chunk.line;
      bytes[address] = chunk.data[i]!;
    }
  }
  return { bytes, dataBytes: chunks.reduce((total, chunk) => total + chunk.data.length, 0) };
}

/** Throws `hex-too-big` when the image would overwrite the bootloader or run past the flash. */
export function assertImageFits(image: FirmwareImage, board: Board, source = 'The firmware'): void {
  if (image.bytes.length <= board.applicationFlashSize) return;
  throw new BoardfleetError(
    'hex-too-big',
    `${source} needs ${image.bytes.length} bytes of flash but ${board.name} has ${board.applicationFlashSize} for sketches ` +
      `(${board.flash.size} minus ${board.flash.bootloaderSize} for the bootloader); make the sketch smaller or pick a bigger board`,
  );
}

/** Reads a .hex file and checks it fits the board's application flash. */
export async function loadHexFile(path: string, board: Board): Promise<FirmwareImage> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new BoardfleetError('hex-unreadable', `Cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const image = parseIntelHex(text, path);
  assertImageFits(image, board, path);
  return image;
}

function toHex(value: number, digits = 2): string {
  return value.toString(16).toUpperCase().padStart(digits, '0');
}
