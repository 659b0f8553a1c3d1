import { type FileHandle, open } from 'node:fs/promises';
import { BoardfleetError } from '../../protocol/errors.ts';

/** ELF e_machine values of the CPUs Boardfleet images run on, by Debian architecture name. */
export const ELF_MACHINE = { arm64: 183, amd64: 62 } as const;

/** The `uname -m` names of those machines, for messages. */
const MACHINE_NAMES: Record<number, string> = { 183: 'aarch64', 62: 'x86_64' };

const ELF_MAGIC = 0x7f454c46;
const HEADER_SIZE = 64;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
/** A name is read in pieces this big: a large program's string table (Node's) runs to megabytes. */
const NAME_CHUNK = 256;

export interface ElfInfo {
  /** e_machine: {@link ELF_MACHINE}.arm64 (183) for aarch64, .amd64 (62) for x86-64. */
  machine: number;
  /** e_type: 1 relocatable (a kernel module), 2 executable, 3 shared object or PIE. */
  type: number;
  /** The program interpreter (PT_INTERP), e.g. /lib/ld-linux-aarch64.so.1; null for a static file. */
  interpreter: string | null;
  /**
   * DT_NEEDED: the shared libraries the file names, in its order, as `readelf -d` lists them.
   * Not transitive: the libraries' own needs are read from the libraries.
   */
  needed: string[];
}

interface Segment {
  type: number;
  offset: number;
  address: bigint;
  fileSize: number;
}

/** `aarch64` or `x86_64` for the machines images use, else `ELF machine N`. */
export function elfMachineName(machine: number): string {
  return MACHINE_NAMES[machine] ?? `ELF machine ${machine}`;
}

/** True when the file starts with the ELF magic; false for scripts, data and short files. */
export async function isElfFile(path: string): Promise<boolean> {
  const file = await open(path, 'r');
  try {
    const { bytesRead, buffer } = await file.read(Buffer.alloc(4), 0, 4, 0);
    return bytesRead === 4 && buffer.readUInt32BE(0) === ELF_MAGIC;
  } finally {
    await file.close();
  }
}

/**
 * Reads what decides where a program runs and which files it needs: its machine, type,
 * interpreter and DT_NEEDED entries. Only the headers, the dynamic section and the names are
 * read, so a 100 MB binary costs a few reads; stripped files work, as everything comes from the
 * program headers the loader uses too. 64-bit little-endian files only: arm64 and amd64 are.
 */
export async function readElfInfo(path: string): Promise<ElfInfo> {
  const file = await open(path, 'r');
  try {
    const header = await readAt(file, 0, HEADER_SIZE, path, true);
    if (header.length < 4 || header.readUInt32BE(0) !== ELF_MAGIC)
      throw malformed(path, 'it is not an ELF file');
    if (header[4] !== 2 || header[5] !== 1) {
      throw malformed(
        path,
        `it is a ${header[4] === 1 ? '32' : '64'}-bit ${header[5] === 2 ? 'big' : 'little'}-endian ELF file; only 64-bit little-endian files (arm64, amd64) are read`,
      );
    }
    if (header.length < HEADER_SIZE) throw malformed(path, 'it ends inside the ELF header');
    const type = header.readUInt16LE(16);
    const machine = header.readUInt16LE(18);
    const segments = await readSegments(file, header, path);

    const interpreterSegment = segments.find((segment) => segment.type === PT_INTERP);
    const interpreter = interpreterSegment
      ? await readName(file, interpreterSegment.offset, interpreterSegment.fileSize, path)
      : null;

    const dynamic = segments.find((segment) => segment.type === PT_DYNAMIC);
    const needed: string[] = [];
    if (dynamic) {
      const entries = await readAt(file, dynamic.offset, dynamic.fileSize, path);
      const neededOffsets: number[] = [];
      let stringTableAddress: bigint | null = null;
      let stringTableSize: number | null = null;
      for (let at = 0; at + 16 <= entries.length; at += 16) {
        const tag = entries.readBigInt64LE(at);
        if (tag === DT_NULL) break;
        if (tag === DT_NEEDED) neededOffsets.push(fileNumber(entries, at + 8, path));
        else if (tag === DT_STRTAB) stringTableAddress = entries.readBigUInt64LE(at + 8);
        else if (tag === DT_STRSZ) stringTableSize = fileNumber(entries, at + 8, path);
      }
      if (neededOffsets.length > 0) {
        if (stringTableAddress === null) throw malformed(path, 'DT_NEEDED without a string table');
        const table = fileRangeOf(stringTableAddress, segments, path);
        // Linkers always write DT_STRSZ; without it the table ends with its segment.
        const size = Math.min(stringTableSize ?? table.available, table.available);
        for (const offset of neededOffsets) {
          if (offset >= size)
            throw malformed(path, `a DT_NEEDED name lies outside the ${size}-byte string table`);
          needed.push(await readName(file, table.offset + offset, size - offset, path));
        }
      }
    }
    return { machine, type, interpreter, needed };
  } finally {
    await file.close();
  }
}

async function readSegments(file: FileHandle, header: Buffer, path: string): Promise<Segment[]> {
  const tableOffset = fileNumber(header, 32, path);
  const entrySize = header.readUInt16LE(54);
  const count = header.readUInt16LE(56);
  if (count === 0) return [];
  if (entrySize < 56) throw malformed(path, `its program headers are ${entrySize} bytes, not 56`);
  const table = await readAt(file, tableOffset, entrySize * count, path);
  return Array.from({ length: count }, (_, index) => {
    const at = index * entrySize;
    return {
      type: table.readUInt32LE(at),
      offset: fileNumber(table, at + 8, path),
      address: table.readBigUInt64LE(at + 16),
      fileSize: fileNumber(table, at + 32, path),
    };
  });
}

/** Maps a virtual address to its place in the file through the PT_LOAD segment that holds it. */
function fileRangeOf(
  address: bigint,
  segments: Segment[],
  path: string,
): { offset: number; available: number } {
  for (const segment of segments) {
    if (segment.type !== PT_LOAD) continue;
    const end = segment.address + BigInt(segment.fileSize);
    if (address >= segment.address && address < end) {
      return { offset: segment.offset + Number(address - segment.address), available: Number(end - address) };
    }
  }
  throw malformed(path, `address 0x${address.toString(16)} lies in no loaded segment`);
}

/** A NUL-terminated name of at most `limit` bytes, read a piece at a time. */
async function readName(file: FileHandle, position: number, limit: number, path: string): Promise<string> {
  const pieces: Buffer[] = [];
  for (let read = 0; read < limit;) {
    const piece = await readAt(file, position + read, Math.min(NAME_CHUNK, limit - read), path, true);
    if (piece.length === 0) throw malformed(path, `it is truncated inside a name at byte ${position}`);
    const end = piece.indexOf(0);
    if (end >= 0) {
      pieces.push(piece.subarray(0, end));
      return Buffer.concat(pieces).toString('utf8');
    }
    pieces.push(piece);
    read += piece.length;
  }
  throw malformed(path, `a name at byte ${position} has no end within ${limit} bytes`);
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
  if (bytesRead < length && !allowShort) {
    throw malformed(path, `it is truncated: ${length} bytes at ${position} are past its end`);
  }
  return buffer.subarray(0, bytesRead);
}

/** A 64-bit offset or size as a number; no file here comes near 2^53 bytes. */
function fileNumber(buffer: Buffer, at: number, path: string): number {
  const value = buffer.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER))
    throw malformed(path, `a 64-bit offset (${value}) is out of range`);
  return Number(value);
}

function malformed(path: string, reason: string): BoardfleetError {
  return new BoardfleetError('elf-invalid', `cannot read ${path} as an ELF file: ${reason}`);
}
