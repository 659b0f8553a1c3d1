import { describe, expect, it } from 'vitest';
import {
  chooseLibrary,
  findIncludes,
  includeClosure,
  type Library,
  type LibraryLocation,
  parseLibraryProperties,
  resolveLibraries,
} from './library-resolution.ts';

const CORE: LibraryLocation = { kind: 'core', priority: 0 };
const USER: LibraryLocation = { kind: 'user', priority: 1 };
const OPTION: LibraryLocation = { kind: 'option', priority: 2 };
const UNO = { architecture: 'avr', boardId: 'uno' };

function library(folder: string, fields: Partial<Library> & { location: LibraryLocation }): Library {
  const name = folder.split('/').at(-1) as string;
  return {
    name,
    version: '1.0',
    folder,
    sourceFolder: `${folder}/src`,
    layout: '1.5',
    architectures: ['avr'],
    headers: [`${name}.h`],
    includes: [],
    ...fields,
  };
}

const coreWire = library('/core/Wire', {
  location: CORE,
  includes: ['inttypes.h', 'Stream.h', 'utility/twi.h'],
});
const coreSpi = library('/core/SPI', { location: CORE, includes: ['Arduino.h'] });
const userWire = library('/home/Wire', { location: USER, version: '9.9' });
const userI2c = library('/home/FastI2C', { location: USER, headers: ['FastI2C.h', 'Wire.h'] });
const anyArch = library('/home/Blinker', { location: USER, architectures: ['*'] });
const samdOnly = library('/home/SamdTimer', { location: USER, architectures: ['samd'] });
const samdAndAvr = library('/option/SamdTimer', { location: OPTION, architectures: ['samd', 'AVR'] });
const ledA = library('/home/LedA', { location: USER, headers: ['Led.h'] });
const ledB = library('/home/LedB', { location: USER, headers: ['Led.h'] });
const ledC = library('/option/LedC', { location: OPTION, headers: ['Led.h'] });
const sensor = library('/home/Sensor', { location: USER, includes: ['Wire.h', 'SPI.h', 'Sensor.h'] });

describe('chooseLibrary', () => {
  it.each([
    { why: 'the only provider', header: 'SPI.h', libraries: [coreSpi], expected: coreSpi },
    {
      why: 'no provider: left to the compiler',
      header: 'avr/io.h',
      libraries: [coreSpi],
      expected: undefined,
    },
    {
      why: 'a user library overrides the core one of the same name',
      header: 'Wire.h',
      libraries: [coreWire, userWire],
      expected: userWire,
    },
    {
      why: 'a library named after the header beats a later one that only provides it',
      header: 'Wire.h',
      libraries: [coreWire, userI2c],
      expected: coreWire,
    },
    {
      why: 'architectures=* fits an AVR board',
      header: 'Blinker.h',
      libraries: [anyArch],
      expected: anyArch,
    },
    {
      why: 'a library for another architecture is skipped when one fits (case-insensitive)',
      header: 'SamdTimer.h',
      libraries: [samdOnly, samdAndAvr],
      expected: samdAndAvr,
    },
    {
      why: 'a later folder settles two equals of an earlier one',
      header: 'Led.h',
      libraries: [ledA, ledB, ledC],
      expected: ledC,
    },
  ])('$why', ({ header, libraries, expected }) => {
    expect(chooseLibrary(header, libraries, UNO)).toBe(expected);
  });

  it.each([
    {
      why: 'the only provider is for another architecture',
      header: 'SamdTimer.h',
      libraries: [samdOnly],
      code: 'library-architecture-unsupported',
      message: 'library SamdTimer (architectures=samd) does not support avr boards (board uno)',
    },
    {
      why: 'two providers at the same priority, neither named after the header',
      header: 'Led.h',
      libraries: [ledA, ledB],
      code: 'library-ambiguous',
      message:
        'two libraries provide Led.h: /home/LedA and /home/LedB; remove one, or pass the one to use with --library',
    },
  ])('refuses when $why', ({ header, libraries, code, message }) => {
    expect(() => chooseLibrary(header, libraries, UNO)).toThrow(expect.objectContaining({ code, message }));
  });
});

describe('resolveLibraries', () => {
  it.each([
    {
      why: 'follows a library’s own includes, skipping what the core and the sketch provide',
      sketchIncludes: ['Arduino.h', 'Sensor.h', 'config.h'],
      libraries: [coreWire, coreSpi, sensor],
      expected: ['Sensor', 'Wire', 'SPI'],
    },
    {
      why: 'names each library once however often it is included',
      sketchIncludes: ['Wire.h', 'Sensor.h', 'Wire.h'],
      libraries: [coreWire, coreSpi, sensor],
      expected: ['Wire', 'Sensor', 'SPI'],
    },
    {
      why: 'takes a header from a library already chosen rather than a second provider',
      sketchIncludes: ['FastI2C.h', 'Wire.h'],
      libraries: [coreWire, userI2c],
      expected: ['FastI2C'],
    },
    {
      why: 'chooses nothing for headers no library provides',
      sketchIncludes: ['avr/pgmspace.h', 'stdint.h'],
      libraries: [coreWire],
      expected: [],
    },
  ])('$why', ({ sketchIncludes, libraries, expected }) => {
    const resolved = resolveLibraries({
      sketchIncludes,
      availableHeaders: ['Arduino.h', 'Stream.h', 'config.h'],
      libraries,
      target: UNO,
    });
    expect(resolved.map(({ library: chosen }) => chosen.name)).toEqual(expected);
  });

  it('records which libraries each one includes, for its -I flags', () => {
    const resolved = resolveLibraries({
      sketchIncludes: ['Sensor.h'],
      availableHeaders: [],
      libraries: [coreWire, coreSpi, sensor],
      target: UNO,
    });
    const [sensorEntry] = resolved;
    expect(sensorEntry?.uses).toEqual([coreWire, coreSpi]);
    expect(includeClosure(sensorEntry!, resolved)).toEqual([sensor, coreWire, coreSpi]);
  });
});

describe('findIncludes and parseLibraryProperties', () => {
  it('finds angle and quoted includes, not those in comments', () => {
    const source = [
      '#include <Wire.h>',
      '  #  include "utility/twi.h"',
      '// #include <SPI.h>',
      '/* #include <EEPROM.h>',
      '*/',
      '#if defined(USBCON)',
      '#include "PluggableUSB.h"',
      '#endif',
    ].join('\n');
    expect(findIncludes(source)).toEqual(['Wire.h', 'utility/twi.h', 'PluggableUSB.h']);
  });

  it('reads key=value lines, trimming spaces and skipping comments', () => {
    expect(
      parseLibraryProperties('# comment\nname=Wire\nversion = 1.0 \narchitectures=avr,samd\r\nempty=\n'),
    ).toEqual({
      name: 'Wire',
      version: '1.0',
      architectures: 'avr,samd',
      empty: '',
    });
  });
});
