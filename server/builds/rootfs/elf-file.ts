import { type FileHandle, open } from 'node:fs/promises';
import { BoardfleetError } from '../../../protocol/errors.ts';

/** ELF e_machine values of the architectures a board may have, by Debian's architecture name. */
export const ELF_MACHINE = { arm64: 183, amd64: 62 } as const;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

export interface ElfInfo {
  /** e_machine: 183 for aarch64, 62 for x86-64. */
  machine: number;
  /** e_type: 1 relocatable (a kernel module), 2 executable, 3 shared object or PIE. */
  type: number;
  /** The program interpreter (PT_INTERP), e.g. /lib/ld-linux-aarch64.so.1; null for static files. */
  interpreter: string | null;
  /** DT_NEEDED: the shared libraries the file names, in its order. */
  needed: string[];
}

interface Segment {
  type: number;
  offset: number;
  address: bigint;
  fileSize: number;
}

/** True when the file starts with the ELF magic; false for scripts, data and short files. */
export async function isElfFile(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const { bytesRead, buffer } = await file.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.readUInt32BE(0) === 0x7f454c46;
  } finally {
    await file.close();
  }
}

/**
 * Reads what decides which libraries a program needs: its machine, interpreter and DT_NEEDED
 * entries. Only the headers and the dynamic section are read, so a 100 MB binary costs little.
 * 64-bit little-endian files only, which is what arm64 and amd64 use.
 */
export async function readElfInfo(path: string): Promise<ElfInfo> {
  const file = await open(path, 'r');
  try {
    const header = await readAt(file, 0, 64, path);
    checkHeader(header, path);
    const type = header.readUInt16LE(16);
    const machine = header.readUInt16LE(18);
    const programHeaderOffset = Number(header.readBigUInt64LE(32));
    const programHeaderSize = header.readUInt16LE(54);
    const programHeaderCount = header.readUInt16LE(56);
    const segments: Segment[] = [];
    if (programHeaderCount > 0) {
      const table = await readAt(file, programHeaderOffset, programHeaderSize * programHeaderCount, path);
      for (let index = 0; index < programHeaderCount; index++) {
        const entry = table.subarray(index * programHeaderSize);
        segments.push({
          type: entry.readUInt32LE(0),
          offset: Number(entry.readBigUInt64LE(8)),
          address: entry.readBigUInt64LE(16),
          fileSize: Number(entry.readBigUInt64LE(32)),
        });
      }
    }
    const interpreterSegment = segments.find((segment) => segment.type === PT_INTERP);
    const interpreter = interpreterSegment
      ? cString(await readAt(file, interpreterSegment.offset, interpreterSegment.fileSize, path), 0)
      : null;
    const dynamic = segments.find((segment) => segment.type === PT_DYNAMIC);
    const needed: string[] = [];
    if (dynamic) {
      const entries = await readAt(file, dynamic.offset, dynamic.fileSize, path);
      const neededOffsets: bigint[] = [];
      let stringTableAddress: bigint | null = null;
      for (let at = 0; at + 16 <= entries.length; at += 16) {
        const tag = entries.readBigInt64LE(at);
        const value = entries.readBigUInt64LE(at + 8);
        if (tag === DT_NULL) break;
        if (tag === DT_NEEDED) neededOffsets.push(value);
        if (tag === DT_STRTAB) stringTableAddress = value;
      }
      if (neededOffsets.length > 0) {
        if (stringTableAddress === null) throw malformed(path, 'DT_NEEDED without a string table');
        const stringTable = fileOffsetOf(stringTableAddress, segments, path);
        for (const offset of neededOffsets) {
          needed.push(cString(await readAt(file, stringTable + Number(offset), 256, path, true), 0));
        }
      }
    }
    return { machine, type, interpreter, needed };
  } finally {
    await file.close();
  }
}

function checkHeader(header: Buffer, path: string): void {
  if (header.readUInt32BE(0) !== 0x7f454c46) throw malformed(path, 'not an ELF file');
  if (header[4] !== 2 || header[5] !== 1) {
    throw malformed(path, 'not a 64-bit little-endian ELF file (arm64 and amd64 are)');
  }
}

/** Maps a virtual address to its place in the file through the PT_LOAD segment that holds it. */
function fileOffsetOf(address: bigint, segments: Segment[], path: string): number {
  for (const segment of segments) {
    if (segment.type !== PT_LOAD) continue;
    if (address >= segment.address && address < segment.address + BigInt(segment.fileSize)) {
      return segment.offset + Number(address - segment.address);
    }
  }
  throw malformed(path, `address 0x${address.toString(16)} lies in no loaded segment`);
}

async function readAt(
  file: FileHandle,
  position: number,
  length: number,
  path: string,
  allowShort = false,
): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await file.read(buffer, 0, length, position);
  if (bytesRead < length && !allowShort) throw malformed(path, 'the file ends inside a header');
  return buffer.subarray(0, bytesRead);
}

function cString(buffer: Buffer, offset: number): string {
  const end = buffer.indexOf(0, offset);
  return buffer.toString('utf8', offset, end < 0 ? buffer.length : end);
}

function malformed(path: string, why: string): BoardfleetError {
  return new BoardfleetError('elf-invalid', `${path}: ${why}`);
}
