import { cp, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { exists, useTempFolder } from '../../test/support/temp-folders.ts';
import { buildFirmware } from './build-firmware.ts';
import { findLibraries } from './library-folders.ts';

const sketches = join(import.meta.dirname, 'fixtures', 'library-sketches');
const libraryFolders = join(import.meta.dirname, 'fixtures', 'library-folders');
const CORE_LIBRARIES = '/usr/share/arduino/hardware/arduino/avr/libraries';
/** A ~/Arduino/libraries with nothing in it, so the builds do not depend on the machine's. */
const NO_USER_LIBRARIES = join(libraryFolders, 'none');
// Real avr-gcc builds on a loaded two-core machine.
const BUILD_TIMEOUT = 120_000;

const workDir = useTempFolder('library-builds-');
let cacheDir: string;

beforeAll(() => {
  cacheDir = join(workDir(), 'cache');
});

function core(name: string, version = '1.0') {
  return { name, version, folder: join(CORE_LIBRARIES, name), location: 'core' };
}

describe('Arduino libraries in sketch builds, with the real avr-gcc toolchain', () => {
  it.each([
    { sketch: 'uses-wire', board: 'uno', library: core('Wire') },
    { sketch: 'uses-spi', board: 'uno', library: core('SPI') },
    { sketch: 'uses-eeprom', board: 'uno', library: core('EEPROM', '2.0') },
    { sketch: 'uses-software-serial', board: 'uno', library: core('SoftwareSerial') },
    // Without native USB the HID library compiles empty, as with arduino-builder.
    { sketch: 'uses-hid', board: 'uno', library: core('HID') },
    // A native-USB board compiles it whole, with the board's USB ids.
    { sketch: 'uses-hid', board: 'leonardo', library: core('HID') },
  ])(
    'builds $sketch for $board with the core library it includes',
    async ({ sketch, board, library }) => {
      const result = await buildFirmware({
        sketchPath: join(sketches, sketch),
        board,
        outDir: join(workDir(), `${sketch}-${board}`),
        cacheDir,
        userLibrariesDir: NO_USER_LIBRARIES,
      });
      expect(result.libraries).toEqual([library]);
      expect(result.size.flashBytes).toBeLessThan(result.size.flashLimit);
    },
    BUILD_TIMEOUT,
  );

  it(
    'takes libraries from ~/Arduino/libraries (1.0 and 1.5 format, following their own includes), reproducibly',
    async () => {
      const home = join(workDir(), 'home');
      await mkdir(join(home, 'Arduino'), { recursive: true });
      await symlink(join(libraryFolders, 'home'), join(home, 'Arduino', 'libraries'));
      const previousHome = process.env.HOME;
      process.env.HOME = home;
      let first;
      try {
        first = await buildFirmware({
          sketchPath: join(sketches, 'uses-home-library'),
          board: 'uno',
          outDir: join(workDir(), 'home-1'),
          cacheDir: join(workDir(), 'home-cache-1'),
        });
      } finally {
        process.env.HOME = previousHome;
      }
      const second = await buildFirmware({
        sketchPath: join(sketches, 'uses-home-library'),
        board: 'uno',
        outDir: join(workDir(), 'home-2'),
        cacheDir: join(workDir(), 'home-cache-2'),
        userLibrariesDir: join(libraryFolders, 'home'),
      });
      expect(first.libraries).toEqual([
        {
          name: 'Thermometer',
          version: null,
          folder: join(home, 'Arduino', 'libraries', 'Thermometer'),
          location: 'user',
        },
        {
          name: 'Blinker',
          version: '0.3.1',
          folder: join(home, 'Arduino', 'libraries', 'Blinker'),
          location: 'user',
        },
        core('Wire'),
      ]);
      expect(await readFile(second.hexPath)).toEqual(await readFile(first.hexPath));
      expect(await readFile(second.elfPath)).toEqual(await readFile(first.elfPath));
    },
    BUILD_TIMEOUT,
  );

  it(
    'compiles a library once and takes it from the cache on the next build',
    async () => {
      const steps: string[] = [];
      const build = (outDir: string) =>
        buildFirmware({
          sketchPath: join(sketches, 'uses-wire'),
          board: 'uno',
          outDir: join(workDir(), outDir),
          cacheDir: join(workDir(), 'wire-cache'),
          userLibrariesDir: NO_USER_LIBRARIES,
          onStep: (step) => steps.push(step),
        });
      const cold = await build('wire-cold');
      expect(steps).toContain('compiling the library Wire');
      steps.length = 0;
      const warm = await build('wire-warm');
      expect(steps).toContain('using the cached library Wire');
      expect(steps).not.toContain('compiling the library Wire');
      expect(warm.hexSha256).toBe(cold.hexSha256);
    },
    BUILD_TIMEOUT,
  );

  it(
    'lets a --library folder override a core library of the same name, as arduino-builder does',
    async () => {
      const override = join(workDir(), 'override');
      await cp(join(CORE_LIBRARIES, 'Wire'), join(override, 'Wire'), { recursive: true });
      const properties = join(override, 'Wire', 'library.properties');
      await writeFile(
        properties,
        (await readFile(properties, 'utf8')).replace(/^version=.*$/m, 'version=9.9'),
      );
      const result = await buildFirmware({
        sketchPath: join(sketches, 'uses-wire'),
        board: 'uno',
        outDir: join(workDir(), 'override-build'),
        cacheDir,
        userLibrariesDir: NO_USER_LIBRARIES,
        libraryDirs: [override],
      });
      expect(result.libraries).toEqual([
        { name: 'Wire', version: '9.9', folder: join(override, 'Wire'), location: 'option' },
      ]);
    },
    BUILD_TIMEOUT,
  );

  it.each([
    { what: 'one library folder', folder: join(libraryFolders, 'option', 'Chirp') },
    { what: 'a folder of libraries', folder: join(libraryFolders, 'option') },
  ])(
    'takes a library from --library given $what',
    async ({ folder }) => {
      const result = await buildFirmware({
        sketchPath: join(sketches, 'uses-option-library'),
        board: 'uno',
        outDir: join(workDir(), 'option'),
        cacheDir,
        userLibrariesDir: NO_USER_LIBRARIES,
        libraryDirs: [folder],
      });
      expect(result.libraries).toEqual([
        {
          name: 'Chirp',
          version: '2.1.0',
          folder: join(libraryFolders, 'option', 'Chirp'),
          location: 'option',
        },
      ]);
    },
    BUILD_TIMEOUT,
  );

  it.each([
    {
      why: 'its only library is for another architecture',
      sketch: 'uses-samd-library',
      libraryDirs: [join(libraryFolders, 'samd-only')],
      code: 'library-architecture-unsupported',
      message: 'library SamdTimer (architectures=samd) does not support avr boards (board uno)',
    },
    {
      why: 'two libraries in one folder provide its header',
      sketch: 'uses-ambiguous-header',
      libraryDirs: [join(libraryFolders, 'ambiguous')],
      code: 'library-ambiguous',
      message: `two libraries provide Led.h: ${join(libraryFolders, 'ambiguous', 'LedA')} and ${join(libraryFolders, 'ambiguous', 'LedB')}; remove one, or pass the one to use with --library`,
    },
    {
      why: 'a --library folder does not exist',
      sketch: 'uses-wire',
      libraryDirs: [join(libraryFolders, 'missing')],
      code: 'library-folder-not-found',
      message: `No library folder at ${join(libraryFolders, 'missing')} (--library)`,
    },
  ])(
    'refuses a sketch when $why, in one line, creating no output',
    async ({ sketch, libraryDirs, code, message }) => {
      const outDir = join(workDir(), `refused-${code}`);
      await expect(
        buildFirmware({
          sketchPath: join(sketches, sketch),
          board: 'uno',
          outDir,
          cacheDir,
          userLibrariesDir: NO_USER_LIBRARIES,
          libraryDirs,
        }),
      ).rejects.toMatchObject({ code, message });
      expect(await exists(outDir)).toBe(false);
    },
  );
});

describe('findLibraries', () => {
  it('reads each library’s format, properties and headers, and leaves examples and extras out', async () => {
    const libraries = await findLibraries({
      core: CORE_LIBRARIES,
      user: join(libraryFolders, 'home'),
      options: [],
    });
    expect(libraries.map(({ name, layout, location }) => `${name} ${layout} ${location.kind}`)).toEqual([
      'EEPROM 1.5 core',
      'HID 1.5 core',
      'SPI 1.5 core',
      'SoftwareSerial 1.5 core',
      'Wire 1.5 core',
      'Blinker 1.5 user',
      'Thermometer 1.0 user',
    ]);
    const thermometer = libraries.find(({ name }) => name === 'Thermometer');
    expect(thermometer).toMatchObject({
      version: null,
      architectures: ['*'],
      headers: ['Thermometer.h'],
      includes: ['Thermometer.h', 'Wire.h', 'utility/conversion.h', 'conversion.h'],
    });
  });
});
