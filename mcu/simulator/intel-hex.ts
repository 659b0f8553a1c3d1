import { BoardfleetError } from '../../protocol/errors.ts';

/** One data record of an Intel HEX file, at its absolute address. */
export interface HexRecord {
  address: number;
  data: Buffer;
}

const DATA = 0x00;
const END = 0x01;
const EXTENDED_SEGMENT = 0x02;
const START_SEGMENT = 0x03;
const EXTENDED_LINEAR = 0x04;
const START_LINEAR = 0x05;

/** Data records of an Intel HEX text, checksums verified; `source` names the file in errors. */
export function parseIntelHex(text: string, source = 'hex file'): HexRecord[] {
  const records: HexRecord[] = [];
  let base = 0;
  const lines = text.split(/\r?\n/);
  for (const [index, rawLine] of lines.entries()) {
    const line = rawLine.trim();
    if (!line) continue;
    const bytes = /^:([0-9a-fA-F]{2})+$/.test(line) ? Buffer.from(line.slice(1), 'hex') : undefined;
    if (!bytes || bytes.length < 5 || bytes.length !== bytes[0]! + 5) {
      throw new BoardfleetError('hex-invalid', `${source}, line ${index + 1}: not an Intel HEX record`);
    }
    if (bytes.reduce((sum, byte) => sum + byte, 0) & 0xff) {
      throw new BoardfleetError('hex-invalid', `${source}, line ${index + 1}: bad checksum`);
    }
    const type = bytes[3]!;
    const data = bytes.subarray(4, 4 + bytes[0]!);
    if (type === DATA) records.push({ address: base + bytes.readUInt16BE(1), data: Buffer.from(data) });
    else if (type === EXTENDED_SEGMENT) base = data.readUInt16BE(0) * 16;
    else if (type === EXTENDED_LINEAR) base = data.readUInt16BE(0) * 65536;
    else if (type === END) break;
    else if (type !== START_SEGMENT && type !== START_LINEAR) {
      throw new BoardfleetError('hex-invalid', `${source}, line ${index + 1}: unknown record type ${type}`);
    }
  }
  return records;
}

/** The lowest address and the end (one past the highest byte) of the data in a HEX text. */
export function hexExtent(records: HexRecord[]): { start: number; end: number; bytes: number } {
  if (records.length === 0) return { start: 0, end: 0, bytes: 0 };
  return {
    start: Math.min(...records.map((record) => record.address)),
    end: Math.max(...records.map((record) => record.address + record.data.length)),
    bytes: records.reduce((sum, record) => sum + record.data.length, 0),
  };
}

/**
 * The HEX text without start-address records: they mean nothing to an AVR, and simavr's
 * reader rejects them.
 */
export function withoutStartAddress(text: string): string {
  return text
    .split(/\r?\n/)
    .filter((line) => !/^:04000003|^:04000005/i.test(line.trim()))
    .join('\n');
}
