import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const CLI = new URL('../../cli/boardfleet.js', import.meta.url).pathname;

describe('boardfleet boards, ports and doctor', () => {
  it('lists the board types with their upload protocol', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'boards']);
    expect(stdout).toMatch(
      /^uno\s+Arduino Uno\s+atmega328p\s+31\.5 KiB of 32\.0 KiB\s+2\.0 KiB\s+stk500v1 @ 115200\s+dtr-rts-pulse$/m,
    );
    expect(stdout).toMatch(/^leonardo\s+.*avr109 @ 57600\s+1200-baud-touch$/m);
    expect(stdout).toMatch(
      /^rpi-4b\s+Raspberry Pi 4 Model B\s+arm64\s+linux-image-arm64\s+raspi-firmware\s/m,
    );
    const { stdout: json } = await run(process.execPath, [CLI, 'boards', '--json']);
    const ids = (JSON.parse(json) as Array<{ id: string }>).map((board) => board.id);
    expect(ids).toContain('nano:old-bootloader');
    expect(ids).toContain('qemu-virt-arm64');
  });

  it('lists serial ports as JSON', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'ports', '--json']);
    expect(Array.isArray(JSON.parse(stdout))).toBe(true);
  });

  it('names the Debian packages of the tools it cannot find, and fails', async () => {
    // A PATH with nothing on it but an empty folder: the AVR toolchain, gcc and avrdude all vanish.
    const emptyBin = mkdtempSync(join(tmpdir(), 'empty-path-'));
    const result = await run(process.execPath, [CLI, 'doctor'], { env: { PATH: emptyBin } }).catch(
      (error: { code: number; stdout: string }) => error,
    );
    expect('code' in result && result.code).toBe(1);
    expect(result.stdout).toMatch(/^build\s+avr-gcc\s+MISSING \(gcc-avr\)$/m);
    expect(result.stdout).toContain('sudo apt-get install gcc-avr binutils-avr gcc pkg-config udev avrdude');
  });
});
