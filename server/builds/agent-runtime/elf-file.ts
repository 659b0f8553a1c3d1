import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { BoardfleetError } from '../../../protocol/errors.ts';

/** The CPU an ELF binary is built for, in the names Debian and `uname -m` use. */
export type ElfMachine = 'aarch64' | 'x86_64';

const MACHINES: Record<number, ElfMachine> = { 183: 'aarch64', 62: 'x86_64' };

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;

interface ProgramHeader {
  type: number;
  offset: number;
  vaddr: number;
  filesz: number;
}

/**
 * Reads only the headers and the dynamic section of an ELF file (a Node binary is ~100 MB), for
 * 32- and 64-bit files of either byte order. Stripped binaries work: everything comes from the
 * program headers, which the dynamic loader needs too.
 */
class ElfReader {
  private readonly fd: number;
  private readonly fileSize: number;
  readonly is64: boolean;
  private readonly littleEndian: boolean;
  readonly machine: number;
  readonly programHeaders: ProgramHeader[];

  constructor(readonly path: string) {
    this.fd = openSync(path, 'r');
    try {
      this.fileSize = fstatSync(this.fd).size;
      const ident = this.read(0, 16);
      if (ident.readUInt32BE(0) !== 0x7f454c46) this.fail('it is not an ELF file');
      if (ident[4] !== 1 && ident[4] !== 2) this.fail(`unknown ELF class ${ident[4]}`);
      if (ident[5] !== 1 && ident[5] !== 2) this.fail(`unknown ELF byte order ${ident[5]}`);
      this.is64 = ident[4] === 2;
      this.littleEndian = ident[5] === 1;
      const header = this.read(0, this.is64 ? 64 : 52);
      this.machine = this.u16(header, 18);
      const phoff = this.is64 ? this.u64(header, 32) : this.u32(header, 28);
      const phentsize = this.u16(header, this.is64 ? 54 : 42);
      const phnum = this.u16(header, this.is64 ? 56 : 44);
      const table = this.read(phoff, phentsize * phnum);
      this.programHeaders = Array.from({ length: phnum }, (_, index) => {
        const at = index * phentsize;
        return this.is64
          ? {
              type: this.u32(table, at),
              offset: this.u64(table, at + 8),
              vaddr: this.u64(table, at + 16),
              filesz: this.u64(table, at + 32),
            }
          : {
              type: this.u32(table, at),
              offset: this.u32(table, at + 4),
              vaddr: this.u32(table, at + 8),
              filesz: this.u32(table, at + 16),
            };
      });
    } catch (error) {
      closeSync(this.fd);
      throw error;
    }
  }

  close(): void {
    closeSync(this.fd);
  }

  interpreter(): string | null {
    const segment = this.programHeaders.find((header) => header.type === PT_INTERP);
    return segment ? cString(this.read(segment.offset, segment.filesz), 0) : null;
  }

  needed(): string[] {
    const dynamic = this.programHeaders.find((header) => header.type === PT_DYNAMIC);
    if (!dynamic) return [];
    const entrySize = this.is64 ? 16 : 8;
    const entries = this.read(dynamic.offset, dynamic.filesz);
    const neededOffsets: number[] = [];
    let strtab: number | null = null;
    let strsz: number | null = null;
    for (let at = 0; at + entrySize <= entries.length; at += entrySize) {
      const tag = this.is64 ? this.u64(entries, at) : this.u32(entries, at);
      const value = this.is64 ? this.u64(entries, at + 8) : this.u32(entries, at + 4);
      if (tag === DT_NULL) break;
      if (tag === DT_NEEDED) neededOffsets.push(value);
      else if (tag === DT_STRTAB) strtab = value;
      else if (tag === DT_STRSZ) strsz = value;
    }
    if (neededOffsets.length === 0) return [];
    if (strtab === null || strsz === null) this.fail('its dynamic section has no string table');
    const strings = this.read(this.fileOffset(strtab), strsz);
    return neededOffsets.map((offset) => cString(strings, offset));
  }

  /** The dynamic section names its string table by address; the loadable segments map it to the file. */
  private fileOffset(address: number): number {
    const segment = this.programHeaders.find(
      (header) =>
        header.type === PT_LOAD && address >= header.vaddr && address < header.vaddr + header.filesz,
    );
    if (!segment) this.fail(`no loadable segment holds address 0x${address.toString(16)}`);
    return address - segment.vaddr + segment.offset;
  }

  private read(offset: number, length: number): Buffer {
    if (offset + length > this.fileSize) this.fail('it is truncated');
    const buffer = Buffer.alloc(length);
    readSync(this.fd, buffer, 0, length, offset);
    return buffer;
  }

  private u16(buffer: Buffer, at: number): number {
    return this.littleEndian ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at);
  }

  private u32(buffer: Buffer, at: number): number {
    return this.littleEndian ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at);
  }

  private u64(buffer: Buffer, at: number): number {
    const value = this.littleEndian ? buffer.readBigUInt64LE(at) : buffer.readBigUInt64BE(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`a 64-bit field at ${at} is out of range`);
    return Number(value);
  }

  private fail(reason: string): never {
    throw new BoardfleetError('bad-elf-file', `cannot read ${this.path} as an executable: ${reason}`);
  }
}

function cString(buffer: Buffer, offset: number): string {
  const end = buffer.indexOf(0, offset);
  return buffer.toString('latin1', offset, end < 0 ? buffer.length : end);
}

function withElf<T>(path: string, use: (elf: ElfReader) => T): T {
  const elf = new ElfReader(path);
  try {
    return use(elf);
  } finally {
    elf.close();
  }
}

/** The CPU `binary` runs on; an error for a CPU Boardfleet images do not use. */
export function elfMachine(binary: string): ElfMachine {
  return withElf(binary, (elf) => {
    const machine = MACHINES[elf.machine];
    if (!machine) {
      throw new BoardfleetError(
        'bad-elf-file',
        `${binary} is built for ELF machine ${elf.machine}, not aarch64 (183) or x86_64 (62)`,
      );
    }
    return machine;
  });
}

/**
 * The shared libraries `binary` names (DT_NEEDED, in its order: `libstdc++.so.6`, `libc.so.6`…),
 * as `readelf -d` lists them; empty for a static binary. Not transitive: the libraries' own
 * needs are read from the libraries.
 */
export function readElfNeeded(binary: string): string[] {
  return withElf(binary, (elf) => elf.needed());
}

/** The dynamic loader `binary` asks for (`/lib/ld-linux-aarch64.so.1`), or null for a static binary. */
export function readElfInterpreter(binary: string): string | null {
  return withElf(binary, (elf) => elf.interpreter());
}
