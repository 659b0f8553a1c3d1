import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256File } from '../../../../lib/hash.ts';
import { readElfInfo } from '../../../native/elf-file.ts';
import { CrossCompiler } from '../../../native/cross-compiler.repository.ts';
import { buildRebootHelper } from './reboot-helper.ts';

/** Counts the compilations, to tell a warm cache from a cold one. */
class CountingCompiler extends CrossCompiler {
  compilations = 0;
  override async run(args: string[], cwd?: string): Promise<string> {
    if (args.includes('-o')) this.compilations++;
    return super.run(args, cwd);
  }
}

describe('boardfleet-reboot', () => {
  it('is a static aarch64 program, the same bytes from two cold builds, compiled once per cache', async () => {
    const compiler = new CountingCompiler();
    const first = await buildRebootHelper(mkdtempSync(join(tmpdir(), 'reboot-a-')), compiler);
    const second = await buildRebootHelper(mkdtempSync(join(tmpdir(), 'reboot-b-')), compiler);
    expect(compiler.compilations).toBe(2);
    expect(await sha256File(second)).toBe(await sha256File(first));

    const header = readFileSync(first).subarray(0, 20);
    expect([...header.subarray(0, 7)]).toEqual([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // ELF, 64-bit, little-endian
    expect(header.readUInt16LE(16)).toBe(2); // ET_EXEC: static, not a PIE
    expect(header.readUInt16LE(18)).toBe(183); // EM_AARCH64
    expect(await readElfInfo(first)).toMatchObject({ interpreter: null, needed: [] });
    expect(statSync(first).mode & 0o111).not.toBe(0);
    // The restart command the firmware and the qemu harness look for is in the program.
    expect(readFileSync(first).includes(Buffer.from('0 tryboot\0'))).toBe(true);

    const again = await buildRebootHelper(join(first, '../../../..'), compiler);
    expect(again).toBe(first);
    expect(compiler.compilations).toBe(2);
  });

  it('names the Debian packages when the cross compiler is missing', async () => {
    await expect(
      buildRebootHelper(mkdtempSync(join(tmpdir(), 'reboot-c-')), new CrossCompiler('/nonexistent')),
    ).rejects.toThrow(
      'aarch64-linux-gnu-gcc is not installed. Install it with: sudo apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross',
    );
  });
});
