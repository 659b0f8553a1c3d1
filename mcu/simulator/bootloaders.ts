import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256 } from '../../lib/hash.ts';
import { missingPackage } from '../../lib/host-tools.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { defaultCacheDirectory, fileExists, HostTools } from './host-tools.repository.ts';
import { hexExtent, parseIntelHex, withoutStartAddress } from './intel-hex.ts';

const BOOTLOADER_SOURCES = '/usr/share/arduino/hardware/arduino/avr/bootloaders';

interface BootloaderRecipe {
  mcu: string;
  /** Source folder under Debian's bootloaders directory, and the file compiled in it. */
  folder: string;
  source: string;
  /** Where it is linked; the board's fuses start it at flash size minus boot section size. */
  address: number;
  /** Largest image that fits the boot section it was written for. */
  maxBytes: number;
  baudRate: number;
  flags: string[];
  extraSections?: string[];
}

/**
 * Recipes from the defines of each bootloader's Makefile, built with avr-gcc directly.
 * Debian's prebuilt optiboot_atmega328.hex is 20 bytes too big (it runs past the end of the
 * flash), so nothing prebuilt is used; these flags bring optiboot to 500 bytes.
 */
const RECIPES: Record<string, BootloaderRecipe> = {
  'optiboot-atmega328': {
    mcu: 'atmega328p',
    folder: 'optiboot',
    source: 'optiboot.c',
    address: 0x7e00,
    maxBytes: 512,
    baudRate: 115_200,
    flags: [
      '-Os',
      '-fno-split-wide-types',
      '-mrelax',
      '-mshort-calls',
      '-fno-tree-scev-cprop',
      '-fno-jump-tables',
      '-fno-move-loop-invariants',
      '-DF_CPU=16000000L',
      '-DLED_START_FLASHES=3',
      '-DBAUD_RATE=115200',
      '-Wl,--section-start=.text=0x7e00',
      '-Wl,--section-start=.version=0x7ffe',
      '-Wl,--relax',
      '-Wl,--gc-sections',
      '-nostartfiles',
      '-nostdlib',
    ],
    extraSections: ['.version'],
  },
  'atmegaboot-atmega328': {
    mcu: 'atmega328p',
    folder: 'atmega',
    source: 'ATmegaBOOT_168.c',
    address: 0x7800,
    maxBytes: 2048,
    baudRate: 57_600,
    flags: [
      '-Os',
      '-fno-inline-small-functions',
      '-fno-split-wide-types',
      '-mshort-calls',
      '-DF_CPU=16000000L',
      '-DMAX_TIME_COUNT=F_CPU>>4',
      '-DNUM_LED_FLASHES=1',
      '-DBAUD_RATE=57600',
      '-Wl,--section-start=.text=0x7800',
    ],
  },
  'stk500v2-atmega2560': {
    mcu: 'atmega2560',
    folder: 'stk500v2',
    source: 'stk500boot.c',
    address: 0x3e000,
    maxBytes: 8192,
    baudRate: 115_200,
    flags: [
      '-Os',
      '-DF_CPU=16000000UL',
      '-D_MEGA_BOARD_',
      '-funsigned-char',
      '-funsigned-bitfields',
      '-fpack-struct',
      '-fshort-enums',
      '-fno-jump-tables',
      '-std=gnu99',
      '-Wl,--section-start=.text=0x3e000',
    ],
  },
};

export interface BuiltBootloader {
  name: string;
  hexPath: string;
  /** Link address: where the image starts in flash. */
  address: number;
  /** Bytes of code and data in the image. */
  bytes: number;
  /** One past the last byte the image occupies. */
  end: number;
  baudRate: number;
  sha256: string;
}

export interface BootloaderBuildOptions {
  cacheDir?: string;
  tools?: HostTools;
  /** Where Debian's bootloader sources are; a test may point elsewhere. */
  sourceRoot?: string;
}

export function knownBootloaders(): string[] {
  return Object.keys(RECIPES);
}

/**
 * Builds a bootloader from Debian's arduino-core-avr sources, or returns the cached build.
 * The cache key hashes the compiler's version, the flags and every file in the source folder.
 */
export async function buildBootloader(
  name: string,
  options: BootloaderBuildOptions = {},
): Promise<BuiltBootloader> {
  const recipe = RECIPES[name];
  if (!recipe) {
    throw new BoardfleetError(
      'bootloader-unknown',
      `No recipe for the bootloader "${name}"; the simulator can build: ${knownBootloaders().join(', ')}`,
    );
  }
  const tools = options.tools ?? new HostTools();
  const sourceFolder = join(options.sourceRoot ?? BOOTLOADER_SOURCES, recipe.folder);
  if (!(await fileExists(join(sourceFolder, recipe.source)))) {
    throw missingPackage(
      `The ${name} bootloader source (${join(sourceFolder, recipe.source)})`,
      'arduino-core-avr',
    );
  }
  await tools.require('avr-objcopy');
  const { stdout: compilerVersion } = await tools.run('avr-gcc', ['--version']);
  const flags = [`-mmcu=${recipe.mcu}`, ...recipe.flags];

  const hash = createHash('sha256').update(compilerVersion).update(JSON.stringify(flags));
  for (const file of (await readdir(sourceFolder)).filter((entry) => /\.(c|h)$/.test(entry)).sort()) {
    hash.update(file).update(await readFile(join(sourceFolder, file)));
  }
  const key = hash.digest('hex').slice(0, 16);
  const hexPath = join(options.cacheDir ?? defaultCacheDirectory(), 'bootloaders', `${name}-${key}.hex`);

  if (!(await fileExists(hexPath))) {
    await mkdir(dirname(hexPath), { recursive: true });
    const work = await mkdtemp(join(dirname(hexPath), '.build-'));
    try {
      const elf = join(work, `${name}.elf`);
      // Relative source path and no -g: the same inputs give the same bytes anywhere.
      await tools.run('avr-gcc', [...flags, '-o', elf, recipe.source], sourceFolder);
      const sections = ['.text', '.data', ...(recipe.extraSections ?? [])].flatMap((section) => [
        '-j',
        section,
      ]);
      await tools.run('avr-objcopy', [...sections, '-O', 'ihex', elf, join(work, 'out.hex')]);
      const hex = withoutStartAddress(await readFile(join(work, 'out.hex'), 'utf8'));
      checkFits(name, recipe, hex);
      await writeFile(join(work, 'final.hex'), hex);
      await rename(join(work, 'final.hex'), hexPath);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  const hex = await readFile(hexPath, 'utf8');
  const extent = checkFits(name, recipe, hex);
  return {
    name,
    hexPath,
    address: recipe.address,
    bytes: extent.bytes,
    end: extent.end,
    baudRate: recipe.baudRate,
    sha256: sha256(hex),
  };
}

function checkFits(name: string, recipe: BootloaderRecipe, hex: string): ReturnType<typeof hexExtent> {
  const extent = hexExtent(parseIntelHex(hex, name));
  if (extent.start < recipe.address || extent.end > recipe.address + recipe.maxBytes) {
    throw new BoardfleetError(
      'bootloader-too-big',
      `The ${name} bootloader occupies 0x${extent.start.toString(16)}..0x${extent.end.toString(16)}, outside its ` +
        `${recipe.maxBytes}-byte boot section at 0x${recipe.address.toString(16)}; the compiler's code generation changed`,
    );
  }
  return extent;
}
