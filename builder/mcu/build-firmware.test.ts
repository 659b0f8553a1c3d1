import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AvrToolchain } from './avr-toolchain.repository.ts';
import { exists, useTempFolder } from '../../test/support/temp-folders.ts';
import { buildFirmware } from './build-firmware.ts';

const fixtures = join(import.meta.dirname, 'fixtures');
const workDir = useTempFolder('build-firmware-');

describe('buildFirmware with the real avr-gcc toolchain', () => {
  it('builds the firmata recipe for an Uno into a .hex and .elf that fit, byte-identical on a second build elsewhere', async () => {
    const first = await buildFirmware({
      recipe: 'firmata',
      board: 'uno',
      outDir: join(workDir(), 'firmata-1'),
    });
    const second = await buildFirmware({
      recipe: 'firmata',
      board: 'uno',
      outDir: join(workDir(), 'firmata-2'),
    });
    expect(first.hexPath).toBe(join(workDir(), 'firmata-1', 'firmata.hex'));
    expect(first.size.flashLimit).toBe(32256);
    expect(first.size.ramLimit).toBe(2048);
    expect(first.size.flashBytes).toBeGreaterThan(1000);
    expect(first.size.flashBytes).toBeLessThan(first.size.flashLimit);
    expect(first.warnings).toBe('');
    expect(await readFile(second.hexPath)).toEqual(await readFile(first.hexPath));
    expect(await readFile(second.elfPath)).toEqual(await readFile(first.elfPath));
    expect(second.hexSha256).toBe(first.hexSha256);
  });

  it('builds an Arduino sketch against the Arduino core, calling a function defined after its use, reproducibly', async () => {
    // Separate caches: both builds compile the Arduino core themselves.
    const first = await buildFirmware({
      sketchPath: join(fixtures, 'blink'),
      board: 'uno',
      outDir: join(workDir(), 'blink-1'),
      cacheDir: join(workDir(), 'cache-1'),
    });
    const second = await buildFirmware({
      sketchPath: join(fixtures, 'blink', 'blink.ino'),
      board: 'uno',
      outDir: join(workDir(), 'blink-2'),
      cacheDir: join(workDir(), 'cache-2'),
    });
    expect(first.name).toBe('blink');
    expect(first.size.flashBytes).toBeGreaterThan(500);
    expect(await readFile(second.elfPath)).toEqual(await readFile(first.elfPath));
    expect(second.hexSha256).toBe(first.hexSha256);
  });

  it('reuses the compiled Arduino core from its cache and still produces the same image', async () => {
    const steps: string[] = [];
    const cached = await buildFirmware({
      sketchPath: join(fixtures, 'blink'),
      board: 'uno',
      outDir: join(workDir(), 'blink-cached'),
      cacheDir: join(workDir(), 'cache-1'),
      onStep: (step) => steps.push(step),
    });
    expect(steps).toContain('using the cached Arduino core');
    expect(steps).not.toContain('compiling the Arduino core');
    expect(await readFile(cached.elfPath)).toEqual(await readFile(join(workDir(), 'blink-1', 'blink.elf')));
  });

  it('refuses a sketch too big for the Uno beside its bootloader, leaving no .hex to flash', async () => {
    const outDir = join(workDir(), 'too-big');
    await expect(
      buildFirmware({ sketchPath: join(fixtures, 'too-big'), board: 'uno', outDir }),
    ).rejects.toMatchObject({
      code: 'firmware-too-big',
      message: expect.stringMatching(/needs \d+ bytes of flash but board uno has room for 32256/),
    });
    expect(await exists(join(outDir, 'too-big.hex'))).toBe(false);
  });

  it('names the Debian packages to install when the toolchain is missing', async () => {
    await expect(
      buildFirmware({
        recipe: 'firmata',
        board: 'uno',
        outDir: join(workDir(), 'none'),
        toolchain: new AvrToolchain('/nonexistent'),
      }),
    ).rejects.toMatchObject({
      code: 'toolchain-missing',
      message: expect.stringContaining('apt-get install gcc-avr binutils-avr'),
    });
  });

  it('rejects an unknown board and a board whose MCU the recipe does not support', async () => {
    await expect(buildFirmware({ recipe: 'firmata', board: 'zx81' })).rejects.toMatchObject({
      code: 'board-unknown',
    });
    await expect(
      buildFirmware({ recipe: join(fixtures, 'uno-only-recipe'), board: 'mega2560' }),
    ).rejects.toMatchObject({
      code: 'board-unsupported',
      message: 'Recipe uno-only supports atmega328p, but board mega2560 has an atmega2560',
    });
  });

  it('reports a compile error with the compiler message', async () => {
    await expect(
      buildFirmware({
        sketchPath: join(fixtures, 'does-not-compile'),
        board: 'uno',
        outDir: join(workDir(), 'broken'),
        cacheDir: join(workDir(), 'cache-1'),
      }),
    ).rejects.toMatchObject({
      code: 'build-failed',
      message: expect.stringContaining('does-not-compile.ino:4'),
    });
  });
});
