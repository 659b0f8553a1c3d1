import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBootloader } from './bootloaders.ts';
import { buildHarness } from './harness-build.ts';
import { HostTools } from './host-tools.repository.ts';
import { parseIntelHex } from './intel-hex.ts';

const scratch: string[] = [];
async function freshCache(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'boardfleet-bootloader-'));
  scratch.push(directory);
  return directory;
}
afterAll(async () => {
  for (const directory of scratch) await rm(directory, { recursive: true, force: true });
});

describe('bootloaders built from Debian sources', () => {
  it('builds optiboot for the ATmega328P into about 500 bytes that end inside the flash', async () => {
    const optiboot = await buildBootloader('optiboot-atmega328', { cacheDir: await freshCache() });
    const records = parseIntelHex(await readFile(optiboot.hexPath, 'utf8'));
    const code = records
      .filter((record) => record.address < 0x7ffe)
      .reduce((sum, record) => sum + record.data.length, 0);
    expect(code).toBeGreaterThan(450);
    expect(code).toBeLessThanOrEqual(510);
    expect(optiboot.address).toBe(0x7e00);
    expect(Math.min(...records.map((record) => record.address))).toBe(0x7e00);
    expect(optiboot.end).toBeLessThanOrEqual(0x8000);
    expect(optiboot.baudRate).toBe(115_200);
  });

  it('builds the same bytes twice from scratch, and reuses the cached build', async () => {
    const first = await buildBootloader('optiboot-atmega328', { cacheDir: await freshCache() });
    const second = await buildBootloader('optiboot-atmega328', { cacheDir: await freshCache() });
    expect(second.sha256).toBe(first.sha256);
    const cachedAgain = await buildBootloader('optiboot-atmega328', {
      cacheDir: join(first.hexPath, '../..'),
    });
    expect(cachedAgain.hexPath).toBe(first.hexPath);
  });

  it('builds the STK500v2 bootloader into the Mega 2560 boot section', async () => {
    const stk500v2 = await buildBootloader('stk500v2-atmega2560', { cacheDir: await freshCache() });
    expect(stk500v2.address).toBe(0x3e000);
    expect(stk500v2.bytes).toBeLessThanOrEqual(8192);
    expect(stk500v2.end).toBeLessThanOrEqual(0x40000);
  });

  it('builds ATmegaBOOT for the old-bootloader Nano at 57600 baud', async () => {
    const atmegaboot = await buildBootloader('atmegaboot-atmega328', { cacheDir: await freshCache() });
    expect(atmegaboot.address).toBe(0x7800);
    expect(atmegaboot.end).toBeLessThanOrEqual(0x8000);
    expect(atmegaboot.baudRate).toBe(57_600);
  });

  it('names the Debian package when the AVR toolchain is missing', async () => {
    await expect(
      buildBootloader('optiboot-atmega328', {
        cacheDir: await freshCache(),
        tools: new HostTools('/nonexistent'),
      }),
    ).rejects.toThrow(/apt-get install (binutils-avr|gcc-avr)/);
  });

  it('names the Debian package when the harness cannot be built', async () => {
    await expect(
      buildHarness({ cacheDir: await freshCache(), tools: new HostTools('/nonexistent') }),
    ).rejects.toThrow(/apt-get install pkg-config/);
  });

  it('refuses a bootloader it has no recipe for, listing the ones it has', async () => {
    await expect(buildBootloader('caterina-leonardo')).rejects.toThrow(/optiboot-atmega328/);
  });
});
