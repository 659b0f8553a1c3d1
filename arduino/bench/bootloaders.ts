import { BoardfleetError } from '../../protocol/errors.ts';

export const ARDUINO_BOOTLOADER_SOURCES = '/usr/share/arduino/hardware/arduino/avr/bootloaders';

/**
 * How to build each bootloader our board files name from the sources Debian's arduino-core-avr
 * ships. We build them rather than use Debian's prebuilt .hex files: its optiboot_atmega328.hex
 * runs past the end of the 32 KB flash.
 */
export interface BootloaderRecipe {
  mcu: string;
  /** Where its code starts: the simulated board's reset vector (the BOOTRST fuse). */
  address: number;
  /** The room it must fit (its boot section). */
  maxBytes: number;
  /** Relative to ARDUINO_BOOTLOADER_SOURCES. */
  source: string;
  flags: string[];
}

const OPTIBOOT_FLAGS = [
  // The Makefile's flags give 532 bytes with Debian's avr-gcc 5.4; these bring it under 512.
  '-Os',
  '-mshort-calls',
  '-mrelax',
  '-fno-split-wide-types',
  '-ffunction-sections',
  '-fno-inline-small-functions',
  '-fno-move-loop-invariants',
  '-fno-tree-scev-cprop',
  '-fno-jump-tables',
  '-nostartfiles',
  '-nostdlib',
  '-Wl,--relax',
  '-Wl,--gc-sections',
];

export const BOOTLOADER_RECIPES: Record<string, BootloaderRecipe> = {
  'optiboot-atmega328': {
    mcu: 'atmega328p',
    address: 0x7e00,
    maxBytes: 512,
    source: 'optiboot/optiboot.c',
    flags: [
      ...OPTIBOOT_FLAGS,
      '-DF_CPU=16000000L',
      '-DBAUD_RATE=115200',
      '-DLED_START_FLASHES=3',
      '-Wl,--section-start=.text=0x7e00',
      '-Wl,--section-start=.version=0x7ffe',
    ],
  },
  'atmegaboot-atmega328': {
    mcu: 'atmega328p',
    address: 0x7800,
    maxBytes: 2048,
    source: 'atmega/ATmegaBOOT_168.c',
    flags: [
      '-Os',
      '-DF_CPU=16000000L',
      '-DMAX_TIME_COUNT=F_CPU>>4',
      '-DNUM_LED_FLASHES=1',
      '-DBAUD_RATE=57600',
      '-Wl,--section-start=.text=0x7800',
    ],
  },
  'stk500v2-atmega2560': {
    mcu: 'atmega2560',
    address: 0x3e000,
    maxBytes: 8192,
    source: 'stk500v2/stk500boot.c',
    flags: [
      '-Os',
      '-DF_CPU=16000000UL',
      '-D_MEGA_BOARD_',
      '-std=gnu99',
      '-funsigned-char',
      '-funsigned-bitfields',
      '-fpack-struct',
      '-fshort-enums',
      '-fno-jump-tables',
      '-Wl,--section-start=.text=0x3e000',
    ],
  },
};

export function bootloaderRecipe(id: string): BootloaderRecipe {
  const recipe = BOOTLOADER_RECIPES[id];
  if (recipe) return recipe;
  if (id.startsWith('caterina')) {
    throw new BoardfleetError(
      'board-not-simulated',
      `The ${id} bootloader talks over the ATmega32U4's native USB, which simavr cannot simulate; there is no simulated Leonardo`,
    );
  }
  throw new BoardfleetError('bootloader-unknown', `No recipe for the bootloader "${id}"`);
}
