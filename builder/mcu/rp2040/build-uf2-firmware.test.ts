import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../../../lib/hash.ts';
import { UF2_BLOCK_SIZE } from '../../../lib/uf2.ts';
import { expectBootablePicoUf2 } from '../../../test/support/pico-uf2-image.ts';
import { exists, useTempFolder } from '../../../test/support/temp-folders.ts';
import { ArmToolchain } from './arm-toolchain.repository.ts';
import { buildUf2Firmware, type Uf2BuildResult } from './build-uf2-firmware.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures');
const PICO_BLINK = join(fixtures, 'pico-blink');
/** arm-none-eabi-gcc on a loaded two-core machine. */
const SLOW = 180_000;

const workDir = useTempFolder('build-uf2-firmware-');
let first: Uf2BuildResult;

beforeAll(async () => {
  first = await buildUf2Firmware({ recipe: 'firmata', board: 'pico', outDir: join(workDir(), 'first') });
}, SLOW);

/** The smallest Pico recipe in a folder of its own, with `edit` applied to its blink.c. */
async function editedFixture(name: string, edit: (source: string) => string): Promise<string> {
  const folder = join(workDir(), name);
  await cp(PICO_BLINK, folder, { recursive: true });
  const source = join(folder, 'blink.c');
  await writeFile(source, edit(await readFile(source, 'utf8')));
  return folder;
}

describe('buildUf2Firmware with the real arm-none-eabi-gcc', { timeout: SLOW }, () => {
  it('builds the firmata recipe for the Pico into a .uf2 and .elf, byte-identical on a second build elsewhere', async () => {
    const second = await buildUf2Firmware({
      recipe: 'firmata',
      board: 'pico',
      outDir: join(workDir(), 'second'),
    });
    expect(first).toMatchObject({
      name: 'firmata',
      board: 'pico',
      outDir: join(workDir(), 'first'),
      uf2Path: join(workDir(), 'first', 'firmata.uf2'),
      elfPath: join(workDir(), 'first', 'firmata.elf'),
      warnings: '',
    });
    expect(first.uf2Sha256).toBe(sha256(await readFile(first.uf2Path)));
    expect(second.uf2Sha256).toBe(first.uf2Sha256);
    expect(await readFile(second.elfPath)).toEqual(await readFile(first.elfPath));
  });

  it('writes UF2 blocks for the RP2040 whose flash image starts with a sealed stage-2 boot', async () => {
    const file = await readFile(first.uf2Path);
    expect(file.length % UF2_BLOCK_SIZE).toBe(0);
    // Family id flag and the RP2040's family id in the first block's header.
    expect(file.readUInt32LE(8) & 0x2000).toBe(0x2000);
    expect(file.readUInt32LE(28)).toBe(0xe48bff56);
    expect(file.readUInt32LE(16)).toBe(256);
    expectBootablePicoUf2(file);
  });

  it('reports flash and RAM against the Pico’s 2 MB and 264 KB', () => {
    expect(first.size).toMatchObject({ flashLimit: 2 * 1024 * 1024, ramLimit: 264 * 1024 });
    // The stage-2 boot, the vector table, Firmata and the chip's drivers: a few KB.
    expect(first.size.flashBytes).toBeGreaterThan(1024);
    expect(first.size.flashBytes).toBeLessThan(64 * 1024);
    expect(first.size.ramBytes).toBeLessThan(16 * 1024);
    expect(first.durationMs).toBeGreaterThan(0);
  });

  it('fails a source that does not compile with the compiler message at its file and line, leaving no .uf2', async () => {
    const recipe = await editedFixture('broken', (source) =>
      source.replace('int main(void) {', 'int main(void) { oops'),
    );
    const outDir = join(workDir(), 'broken-out');
    await expect(buildUf2Firmware({ recipe, board: 'pico', outDir })).rejects.toMatchObject({
      code: 'build-failed',
      message: expect.stringMatching(/^arm-none-eabi-gcc failed:\n(.*\n)*blink\.c:\d+:\d+: error: /),
    });
    expect(await exists(join(outDir, 'pico-blink.uf2'))).toBe(false);
  });

  it('refuses an image larger than the Pico’s flash, writing no .uf2', async () => {
    const recipe = await editedFixture('too-big', (source) =>
      source
        .replace(
          'int main(void) {',
          'static const volatile uint32_t table[600000] = {1, 100000u};\n\nint main(void) {',
        )
        .replace('wait < 100000u', 'wait < table[1]'),
    );
    const outDir = join(workDir(), 'too-big-out');
    await expect(buildUf2Firmware({ recipe, board: 'pico', outDir })).rejects.toMatchObject({
      code: 'firmware-too-big',
      message: expect.stringMatching(
        /^pico-blink does not fit the rp2040 on board pico: \d+ bytes too many for its FLASH region\. Nothing was flashed\.$/,
      ),
    });
    expect(await exists(join(outDir, 'pico-blink.uf2'))).toBe(false);
  });

  it('refuses a recipe that lists an MCU without its architecture’s section, before compiling', async () => {
    const folder = join(workDir(), 'no-rp2040-section');
    await cp(PICO_BLINK, folder, { recursive: true });
    const recipe = join(folder, 'recipe.yaml');
    const text = await readFile(recipe, 'utf8');
    await writeFile(recipe, text.replace('  - rp2040\n', '  - rp2040\n  - atmega328p\n'));
    await expect(buildUf2Firmware({ recipe: folder, board: 'pico' })).rejects.toMatchObject({
      code: 'recipe-invalid',
      message: `${recipe} is not a valid mcu-firmware recipe:\n  mcus.1: "atmega328p" needs an architectures.avr section`,
    });
  });

  it('refuses a board that is not a UF2 board, and a recipe that does not list the board’s MCU', async () => {
    await expect(buildUf2Firmware({ recipe: PICO_BLINK, board: 'uno' })).rejects.toMatchObject({
      code: 'board-wrong-family',
    });
    await expect(
      buildUf2Firmware({ recipe: join(fixtures, 'uno-only-recipe'), board: 'pico' }),
    ).rejects.toMatchObject({
      code: 'board-unsupported',
      message: 'Recipe uno-only supports atmega328p, but board pico has an rp2040',
    });
  });

  it('names the Debian packages to install when the toolchain or newlib is missing', async () => {
    const outDir = join(workDir(), 'none');
    await expect(
      buildUf2Firmware({
        recipe: PICO_BLINK,
        board: 'pico',
        outDir,
        toolchain: new ArmToolchain('/nonexistent'),
      }),
    ).rejects.toMatchObject({
      code: 'toolchain-missing',
      message: expect.stringContaining('apt-get install gcc-arm-none-eabi'),
    });
    await expect(
      buildUf2Firmware({
        recipe: PICO_BLINK,
        board: 'pico',
        outDir,
        toolchain: new ArmToolchain(process.env.PATH, '/nonexistent/nano.specs'),
      }),
    ).rejects.toMatchObject({
      code: 'toolchain-missing',
      message: expect.stringMatching(
        /newlib .* not found\)\. Install it with: sudo apt-get install libnewlib-arm-none-eabi$/,
      ),
    });
    expect(await exists(outDir)).toBe(false);
  });
});
