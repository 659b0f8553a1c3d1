import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { architectureOf, recipeDefineFlags, sourcesFor } from './mcu-recipe.ts';
import { loadRecipeOfKind } from './recipe.ts';

const HEADER = 'kind: mcu-firmware\nid: shared\nversion: 2.3.4\nlanguage: c\nsources: [src/protocol.c]\n';
const AVR = '  avr: { sources: [src/avr/main.c] }\n';
const RP2040 =
  '  rp2040: { sources: [src/rp2040/main.c], boot2: src/rp2040/boot2.c, linkerScript: src/rp2040/rp2040.ld }\n';

function recipeFile(text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'mcu-recipe-')), 'recipe.yaml');
  writeFileSync(path, text);
  return path;
}

const load = (text: string) => loadRecipeOfKind(recipeFile(text), 'mcu-firmware');

describe('mcu-firmware recipes with per-architecture sources', () => {
  it('adds each architecture’s sources to the common ones, and keeps the RP2040 boot2 and linker script', () => {
    const recipe = load(`${HEADER}architectures:\n${AVR}${RP2040}mcus: [atmega328p, rp2040]\n`);
    expect(sourcesFor(recipe, 'avr')).toEqual(['src/protocol.c', 'src/avr/main.c']);
    expect(sourcesFor(recipe, 'rp2040')).toEqual(['src/protocol.c', 'src/rp2040/main.c']);
    expect(recipe.architectures?.rp2040).toMatchObject({
      boot2: 'src/rp2040/boot2.c',
      linkerScript: 'src/rp2040/rp2040.ld',
    });
  });

  it('takes `sources` as all the sources of a recipe without `architectures`', () => {
    const recipe = load(`${HEADER}mcus: [atmega328p]\n`);
    expect(sourcesFor(recipe, 'avr')).toEqual(['src/protocol.c']);
  });

  it.each([
    {
      what: 'an MCU whose architecture has no section',
      text: `${HEADER}architectures:\n${AVR}mcus: [atmega328p, rp2040]\n`,
      problems: ['mcus.1: "rp2040" needs an architectures.rp2040 section (sources, boot2, linkerScript)'],
    },
    {
      what: 'an AVR MCU once the recipe has architectures',
      text: `${HEADER}architectures:\n${RP2040}mcus: [atmega2560, rp2040]\n`,
      problems: ['mcus.0: "atmega2560" needs an architectures.avr section'],
    },
    {
      what: 'the RP2040 in a recipe without architectures',
      text: `${HEADER}mcus: [rp2040]\n`,
      problems: ['mcus.0: "rp2040" needs an architectures.rp2040 section (sources, boot2, linkerScript)'],
    },
    {
      what: 'an MCU of no architecture we build for',
      text: `${HEADER}mcus: [esp32]\n`,
      problems: ['mcus.0: "esp32" is not an MCU we build for (atmega…, rp2040)'],
    },
    {
      what: 'an unknown architecture',
      text: `${HEADER}architectures:\n${AVR}  esp32: { sources: [x.c] }\nmcus: [atmega328p]\n`,
      problems: ['architectures: unknown architecture "esp32": known are avr, rp2040'],
    },
    {
      what: 'an RP2040 section without its stage-2 boot',
      text: `${HEADER}architectures:\n  rp2040: { sources: [a.c], linkerScript: a.ld }\nmcus: [rp2040]\n`,
      problems: ['architectures.rp2040.boot2: Invalid input: expected string, received undefined'],
    },
    {
      what: 'files outside the recipe folder',
      text:
        `${HEADER}architectures:\n` +
        '  rp2040: { sources: [../a.c], boot2: /tmp/boot2.c, linkerScript: ../../x.ld }\nmcus: [rp2040]\n',
      problems: [
        'architectures.rp2040.sources.0: "../a.c" must stay inside the recipe folder',
        'architectures.rp2040.boot2: "/tmp/boot2.c" must stay inside the recipe folder',
        'architectures.rp2040.linkerScript: "../../x.ld" must stay inside the recipe folder',
      ],
    },
  ])('refuses $what, naming the key', ({ text, problems }) => {
    const path = recipeFile(text);
    expect(() => loadRecipeOfKind(path, 'mcu-firmware')).toThrow(
      `${path} is not a valid mcu-firmware recipe:\n  ${problems.join('\n  ')}`,
    );
  });

  it('knows the architecture of the MCUs the board files name', () => {
    expect(['atmega328p', 'atmega2560', 'atmega32u4', 'rp2040', 'esp32'].map(architectureOf)).toEqual([
      'avr',
      'avr',
      'avr',
      'rp2040',
      undefined,
    ]);
  });

  it('defines the recipe’s and the board’s macros and the version, sorted', () => {
    const recipe = load(
      `${HEADER}mcus: [atmega328p]\ndefines: { NAME: '"x"', BAUD: 57600 }\nboardDefines: { nano: { EXTRA: '1' } }\n`,
    );
    expect(recipeDefineFlags(recipe, 'nano')).toEqual([
      '-DBAUD=57600',
      '-DEXTRA=1',
      '-DFIRMWARE_VERSION_MAJOR=2',
      '-DFIRMWARE_VERSION_MINOR=3',
      '-DNAME="x"',
    ]);
    expect(recipeDefineFlags(recipe, 'uno')).not.toContain('-DEXTRA=1');
  });
});
