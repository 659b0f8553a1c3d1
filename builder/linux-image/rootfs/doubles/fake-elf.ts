/**
 * Small but well-formed ELF64 little-endian files for tests: a program or library with an
 * interpreter and DT_NEEDED entries. Only the parts the image builder reads are present.
 */
export interface FakeElfOptions {
  /** e_machine; 183 (aarch64) by default. */
  machine?: number;
  /** e_type; 3 (shared object) by default, 2 for a static or non-PIE executable. */
  type?: number;
  interpreter?: string;
  needed?: string[];
  /** Bytes appended at the end (a busybox applet table, say). */
  trailer?: Buffer;
}

const BASE = 0x10000n;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;

export function fakeElf(options: FakeElfOptions = {}): Buffer {
  const needed = options.needed ?? [];
  const segments: Array<{ type: number; offset: number; size: number }> = [];
  const chunks: Buffer[] = [];
  const programHeaderCount = 1 + (options.interpreter ? 1 : 0) + (needed.length > 0 ? 1 : 0);
  let offset = 64 + programHeaderCount * 56;
  const append = (chunk: Buffer): number => {
    const at = offset;
    chunks.push(chunk);
    offset += chunk.length;
    return at;
  };

  if (options.interpreter) {
    const bytes = Buffer.from(`${options.interpreter}\0`);
    segments.push({ type: PT_INTERP, offset: append(bytes), size: bytes.length });
  }
  if (needed.length > 0) {
    const strings = Buffer.from(`\0${needed.map((name) => `${name}\0`).join('')}`);
    const stringTable = append(strings);
    const dynamic = Buffer.alloc(16 * (needed.length + 2));
    let position = 1;
    needed.forEach((name, index) => {
      dynamic.writeBigInt64LE(1n, index * 16);
      dynamic.writeBigUInt64LE(BigInt(position), index * 16 + 8);
      position += Buffer.byteLength(name) + 1;
    });
    dynamic.writeBigInt64LE(5n, needed.length * 16);
    dynamic.writeBigUInt64LE(BASE + BigInt(stringTable), needed.length * 16 + 8);
    segments.push({ type: PT_DYNAMIC, offset: append(dynamic), size: dynamic.length });
  }

  if (options.trailer) append(options.trailer);

  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2; // 64-bit
  header[5] = 1; // little-endian
  header[6] = 1;
  header.writeUInt16LE(options.type ?? 3, 16);
  header.writeUInt16LE(options.machine ?? 183, 18);
  header.writeUInt32LE(1, 20);
  header.writeBigUInt64LE(64n, 32);
  header.writeUInt16LE(64, 52);
  header.writeUInt16LE(56, 54);
  header.writeUInt16LE(programHeaderCount, 56);
  header.writeUInt16LE(64, 58);

  const programHeaders = Buffer.alloc(programHeaderCount * 56);
  const all = [{ type: PT_LOAD, offset: 0, size: offset }, ...segments];
  all.forEach((segment, index) => {
    const entry = index * 56;
    programHeaders.writeUInt32LE(segment.type, entry);
    programHeaders.writeBigUInt64LE(BigInt(segment.offset), entry + 8);
    programHeaders.writeBigUInt64LE(BASE + BigInt(segment.offset), entry + 16);
    programHeaders.writeBigUInt64LE(BASE + BigInt(segment.offset), entry + 24);
    programHeaders.writeBigUInt64LE(BigInt(segment.size), entry + 32);
    programHeaders.writeBigUInt64LE(BigInt(segment.size), entry + 40);
  });
  return Buffer.concat([header, programHeaders, ...chunks]);
}

/** A static aarch64 busybox whose applet table lists `applets`. */
export function fakeBusybox(applets: string[]): Buffer {
  const names = [...new Set(['[', '[[', ...applets])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return fakeElf({ type: 2, trailer: Buffer.from(`\0${names.join('\0')}\0\0`) });
}
