import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ELF_MACHINE, elfMachineName, isElfFile, readElfInfo } from './elf-file.ts';
import { fakeElf } from '../linux-image/rootfs/doubles/fake-elf.ts';

/** What binutils' readelf says, to check the parser against the real tool. */
function readelf(path: string) {
  const header = execFileSync('readelf', ['-h', path], { encoding: 'utf8' });
  const program = execFileSync('readelf', ['-l', '-d', path], { encoding: 'utf8' });
  return {
    type: /Type:\s+(\w+)/.exec(header)?.[1],
    interpreter: /\[Requesting program interpreter: (.+)\]/.exec(program)?.[1] ?? null,
    needed: [...program.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((match) => match[1]),
  };
}

const ELF_TYPES: Record<string, number> = { REL: 1, EXEC: 2, DYN: 3 };
const ARM64_LIBM = '/usr/aarch64-linux-gnu/lib/libm.so.6';

describe('ELF files', () => {
  let directory: string;
  let dynamicArm64: string;
  let staticArm64: string;

  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), 'boardfleet-elf-'));
    writeFileSync(
      join(directory, 'main.c'),
      '#include <math.h>\n#include <stdio.h>\nint main(int c, char **v) { printf("%f\\n", sqrt(c)); return 0; }\n',
    );
    dynamicArm64 = join(directory, 'dynamic');
    staticArm64 = join(directory, 'static');
    const gcc = (...args: string[]) => execFileSync('aarch64-linux-gnu-gcc', args, { cwd: directory });
    gcc('-O2', '-Wl,--no-as-needed', '-o', dynamicArm64, 'main.c', '-lm');
    gcc('-O2', '-static', '-o', staticArm64, 'main.c', '-lm');
  });
  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('reads a cross-compiled arm64 program as the loader will: machine, loader, libraries in order', async () => {
    const info = await readElfInfo(dynamicArm64);
    const expected = readelf(dynamicArm64);
    expect(info).toEqual({
      machine: ELF_MACHINE.arm64,
      type: ELF_TYPES[expected.type!],
      interpreter: '/lib/ld-linux-aarch64.so.1',
      needed: ['libm.so.6', 'libc.so.6'],
    });
    expect(info.interpreter).toBe(expected.interpreter);
    expect(info.needed).toEqual(expected.needed);
    expect(elfMachineName(info.machine)).toBe('aarch64');
  });

  it('finds neither loader nor libraries in a static program', async () => {
    expect(await readElfInfo(staticArm64)).toEqual({
      machine: ELF_MACHINE.arm64,
      type: ELF_TYPES[readelf(staticArm64).type!],
      interpreter: null,
      needed: [],
    });
  });

  it('reads a shared library of the arm64 sysroot: what it needs, and no loader', async () => {
    const info = await readElfInfo(ARM64_LIBM);
    expect(info).toMatchObject({ machine: ELF_MACHINE.arm64, type: 3, interpreter: null });
    expect(info.needed).toEqual(readelf(ARM64_LIBM).needed);
    expect(info.needed).toContain('libc.so.6');
  });

  it('reads the host Node, whose string table runs to megabytes, as readelf does', async () => {
    const info = await readElfInfo(process.execPath);
    const expected = readelf(process.execPath);
    expect(info.machine).toBe(process.arch === 'arm64' ? ELF_MACHINE.arm64 : ELF_MACHINE.amd64);
    expect(elfMachineName(info.machine)).toBe(process.arch === 'arm64' ? 'aarch64' : 'x86_64');
    expect(info.interpreter).toBe(expected.interpreter);
    expect(info.needed).toEqual(expected.needed);
    expect(info.needed.length).toBeGreaterThan(2);
  });

  it('reads the minimal files the image-builder tests fake, which have no DT_STRSZ', async () => {
    const path = join(directory, 'fake');
    writeFileSync(
      path,
      fakeElf({ interpreter: '/lib/ld-linux-aarch64.so.1', needed: ['libstdc++.so.6', 'libc.so.6'] }),
    );
    expect(await readElfInfo(path)).toEqual({
      machine: 183,
      type: 3,
      interpreter: '/lib/ld-linux-aarch64.so.1',
      needed: ['libstdc++.so.6', 'libc.so.6'],
    });
    writeFileSync(path, fakeElf({ type: 2, machine: 62 }));
    expect(await readElfInfo(path)).toEqual({ machine: 62, type: 2, interpreter: null, needed: [] });
  });

  it('tells ELF files from scripts, data and short files by their first bytes', async () => {
    const script = join(directory, 'script.sh');
    const short = join(directory, 'short');
    writeFileSync(script, '#!/bin/sh\necho hello\n');
    writeFileSync(short, Buffer.from([0x7f, 0x45, 0x4c]));
    expect(await isElfFile(dynamicArm64)).toBe(true);
    expect(await isElfFile(process.execPath)).toBe(true);
    expect(await isElfFile(script)).toBe(false);
    expect(await isElfFile(short)).toBe(false);
  });

  it('refuses what it cannot read with an elf-invalid error naming the file and the reason', async () => {
    const write = (name: string, content: Buffer | string) => {
      const path = join(directory, name);
      writeFileSync(path, content);
      return path;
    };
    const header = (elfClass: number, byteOrder: number) => {
      const bytes = Buffer.alloc(64);
      bytes.writeUInt32BE(0x7f454c46, 0);
      bytes[4] = elfClass;
      bytes[5] = byteOrder;
      return bytes;
    };
    const pastTheEnd = header(2, 1);
    pastTheEnd.writeBigUInt64LE(4096n, 32);
    pastTheEnd.writeUInt16LE(56, 54);
    pastTheEnd.writeUInt16LE(3, 56);
    const cases: Array<[string, Buffer | string, string]> = [
      ['script', '#!/bin/sh\necho hello\n', 'it is not an ELF file'],
      ['empty', '', 'it is not an ELF file'],
      [
        'arm32',
        header(1, 1),
        'it is a 32-bit little-endian ELF file; only 64-bit little-endian files (arm64, amd64) are read',
      ],
      ['big-endian', header(2, 2), 'it is a 64-bit big-endian ELF file'],
      ['cut-header', header(2, 1).subarray(0, 20), 'it ends inside the ELF header'],
      ['cut-table', pastTheEnd, 'it is truncated: 168 bytes at 4096 are past its end'],
    ];
    for (const [name, content, reason] of cases) {
      const path = write(name, content);
      await expect(readElfInfo(path)).rejects.toMatchObject({
        code: 'elf-invalid',
        message: expect.stringContaining(`cannot read ${path} as an ELF file: ${reason}`),
      });
    }
  });

  it('names the machines images use, and any other by number', () => {
    expect(elfMachineName(ELF_MACHINE.arm64)).toBe('aarch64');
    expect(elfMachineName(ELF_MACHINE.amd64)).toBe('x86_64');
    expect(elfMachineName(40)).toBe('ELF machine 40');
  });
});
