import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { elfMachine, readElfInterpreter, readElfNeeded } from './elf-file.ts';

/** The NEEDED entries as binutils' readelf lists them, to check the parser against the real tool. */
const readelfNeeded = (binary: string) =>
  [
    ...execFileSync('readelf', ['-d', binary], { encoding: 'utf8' }).matchAll(
      /\(NEEDED\)\s+Shared library: \[(.+)\]/g,
    ),
  ].map((match) => match[1]);

describe('ELF files', () => {
  let directory: string;
  let dynamicArm64: string;
  let staticArm64: string;

  beforeAll(() => {
    directory = mkdtempSync(join(tmpdir(), 'boardfleet-elf-'));
    const source = join(directory, 'hello.c');
    writeFileSync(
      source,
      '#include <math.h>\n#include <stdio.h>\nint main(int c, char **v) { printf("%f\\n", sqrt(c)); return 0; }\n',
    );
    dynamicArm64 = join(directory, 'hello-dynamic');
    staticArm64 = join(directory, 'hello-static');
    execFileSync('aarch64-linux-gnu-gcc', ['-O2', '-o', dynamicArm64, source, '-lm']);
    execFileSync('aarch64-linux-gnu-gcc', ['-O2', '-static', '-o', staticArm64, source, '-lm']);
  });
  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('names the machine of a cross-compiled arm64 program and of the host Node', () => {
    expect(elfMachine(dynamicArm64)).toBe('aarch64');
    expect(elfMachine(process.execPath)).toBe(process.arch === 'arm64' ? 'aarch64' : 'x86_64');
  });

  it('lists the shared libraries a program needs, as readelf does', () => {
    expect(readElfNeeded(dynamicArm64)).toEqual(readelfNeeded(dynamicArm64));
    expect(readElfNeeded(dynamicArm64)).toEqual(expect.arrayContaining(['libc.so.6', 'libm.so.6']));
    expect(readElfNeeded(process.execPath)).toEqual(readelfNeeded(process.execPath));
  });

  it('reads the dynamic loader a program asks for', () => {
    expect(readElfInterpreter(dynamicArm64)).toBe('/lib/ld-linux-aarch64.so.1');
  });

  it('finds neither libraries nor a loader in a static program', () => {
    expect(readElfNeeded(staticArm64)).toEqual([]);
    expect(readElfInterpreter(staticArm64)).toBeNull();
  });

  it('refuses a file that is not an ELF executable, naming it', () => {
    const script = join(directory, 'script.sh');
    writeFileSync(script, '#!/bin/sh\necho hello\n');
    expect(() => readElfNeeded(script)).toThrow(
      `cannot read ${script} as an executable: it is not an ELF file`,
    );
  });

  it('refuses a truncated ELF file', () => {
    const truncated = join(directory, 'truncated');
    writeFileSync(truncated, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]));
    expect(() => elfMachine(truncated)).toThrow(`cannot read ${truncated} as an executable: it is truncated`);
  });
});
