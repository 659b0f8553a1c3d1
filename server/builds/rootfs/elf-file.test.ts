import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeElf } from './doubles/fake-elf.ts';
import { isElfFile, readElfInfo } from './elf-file.ts';

describe('ELF headers', () => {
  it('reads the interpreter and needed libraries of a real aarch64 program, as the loader will', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'elf-'));
    writeFileSync(
      join(directory, 'main.c'),
      '#include <math.h>\nint main(int c, char **v) { return (int)sqrt(c); }\n',
    );
    execFileSync('aarch64-linux-gnu-gcc', ['-O2', '-Wl,--no-as-needed', '-o', 'main', 'main.c', '-lm'], {
      cwd: directory,
    });
    const info = await readElfInfo(join(directory, 'main'));
    expect(info.machine).toBe(183);
    expect(info.interpreter).toBe('/lib/ld-linux-aarch64.so.1');
    expect(info.needed).toEqual(['libm.so.6', 'libc.so.6']);
  });

  it('tells a host program from an arm64 one, and a static program from a dynamic one', async () => {
    const host = await readElfInfo(process.execPath);
    expect(host.machine).not.toBe(183);
    const directory = mkdtempSync(join(tmpdir(), 'elf-'));
    writeFileSync(join(directory, 'static'), fakeElf({ type: 2 }));
    expect(await readElfInfo(join(directory, 'static'))).toEqual({
      machine: 183,
      type: 2,
      interpreter: null,
      needed: [],
    });
  });

  it('refuses what is not a 64-bit little-endian ELF file, and says so', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'elf-'));
    const script = join(directory, 'script');
    writeFileSync(script, '#!/bin/sh\necho hi\n'.padEnd(80, ' '));
    expect(await isElfFile(script)).toBe(false);
    await expect(readElfInfo(script)).rejects.toThrow(`${script}: not an ELF file`);
    const thirtyTwo = join(directory, 'arm32');
    const header = Buffer.alloc(64);
    header.writeUInt32BE(0x7f454c46, 0);
    header[4] = 1;
    header[5] = 1;
    writeFileSync(thirtyTwo, header);
    expect(await isElfFile(thirtyTwo)).toBe(true);
    await expect(readElfInfo(thirtyTwo)).rejects.toThrow('not a 64-bit little-endian ELF file');
  });
});
