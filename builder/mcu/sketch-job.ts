import { copyFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { extname, join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuildTarget } from './build-target.ts';
import {
  type ArchiveSpec,
  type BuildJob,
  type CompileUnit,
  C_FLAGS,
  CPP_FLAGS,
  seededFlags,
  targetFlags,
} from './compile-unit.ts';
import { findLibraries, libraryFiles, librarySources } from './library-folders.ts';
import {
  findIncludes,
  includeClosure,
  isHeaderFile,
  type Library,
  type ResolvedLibrary,
  resolveLibraries,
} from './library-resolution.ts';
import { readSketch, type Sketch } from './sketch-source.ts';

const ARDUINO_AVR_DIRECTORY = '/usr/share/arduino/hardware/arduino/avr';
const ARDUINO_CORE_DIRECTORY = join(ARDUINO_AVR_DIRECTORY, 'cores/arduino');
const ARDUINO_CORE_LIBRARIES = join(ARDUINO_AVR_DIRECTORY, 'libraries');
/** Reported to sketches as the ARDUINO macro: the version of Debian's arduino-core-avr. */
const ARDUINO_IDE_VERSION = '10807';
const SKETCH_FILES = ['.h', '.hpp', '.c', '.cpp', '.S'];

export interface LibraryOptions {
  /** Default ~/Arduino/libraries (HOME's). */
  userLibrariesDir?: string;
  /** `--library DIR` folders, later ones overriding earlier ones: each a library or a folder of libraries. */
  libraryDirs?: string[];
}

/** Compiles a sketch against the Arduino core and the libraries its includes name. */
export async function sketchJob(
  sketchPath: string,
  target: BuildTarget,
  options: LibraryOptions,
): Promise<BuildJob> {
  const sketch = await readSketch(sketchPath);
  const variantDirectory = join(ARDUINO_AVR_DIRECTORY, 'variants', target.arduinoVariant);
  const coreSources = (await readdir(ARDUINO_CORE_DIRECTORY).catch(() => []))
    .filter((file) => ['.c', '.cpp', '.S'].includes(extname(file)))
    .sort();
  if (coreSources.length === 0) {
    throw new BoardfleetError(
      'toolchain-missing',
      `The Arduino core is missing from ${ARDUINO_CORE_DIRECTORY}. Install it with: sudo apt-get install arduino-core-avr`,
    );
  }
  const resolved = await resolveSketchLibraries(sketch, target, variantDirectory, options);
  const arduinoFlags = [
    ...targetFlags(target),
    `-DARDUINO=${ARDUINO_IDE_VERSION}`,
    `-DARDUINO_${target.arduinoBoardMacro}`,
    '-DARDUINO_ARCH_AVR',
    `-I${ARDUINO_CORE_DIRECTORY}`,
    `-I${variantDirectory}`,
    // Debian's arduino-core-avr 1.8.7 uses DECIMAL_DIG from C++, which the float.h of Debian's
    // gcc-avr 5.4 declares only for C99 and later C.
    '-DDECIMAL_DIG=__DECIMAL_DIG__',
    ...usbFlags(target),
  ];
  const unitFor = (source: string, cwd: string, objectPrefix: string, extraFlags: string[]): CompileUnit => {
    const extension = extname(source);
    const isCpp = extension === '.cpp';
    const languageFlags =
      extension === '.S' ? ['-x', 'assembler-with-cpp', '-flto'] : isCpp ? CPP_FLAGS : C_FLAGS;
    return {
      compiler: isCpp ? 'avr-g++' : 'avr-gcc',
      source,
      cwd,
      objectName: `${objectPrefix}${source.replaceAll('/', '_')}.o`,
      flags: [...arduinoFlags, ...languageFlags, ...extraFlags, ...seededFlags(source)],
    };
  };
  const coreArchive: ArchiveSpec = {
    name: 'core',
    label: 'Arduino core',
    units: coreSources.map((source) => unitFor(source, ARDUINO_CORE_DIRECTORY, 'core_', ['-w'])),
    keyFiles: [],
    wholeArchive: false,
  };
  const libraryArchives: ArchiveSpec[] = [];
  for (const entry of resolved) {
    const { library } = entry;
    const sources = await librarySources(library);
    if (sources.length === 0) continue;
    const includeFlags = includeClosure(entry, resolved).map((used) => `-I${used.sourceFolder}`);
    const name = `lib-${fileSafe(library.name)}`;
    libraryArchives.push({
      name,
      label: `library ${library.name}`,
      units: sources.map((source) =>
        unitFor(source, library.sourceFolder, `${name}_`, ['-w', ...includeFlags]),
      ),
      keyFiles: (await libraryFiles(library))
        .filter((file) => !sources.includes(file))
        .map((file) => join(library.sourceFolder, file)),
      wholeArchive: true,
    });
  }
  const sketchIncludeFlags = resolved.map(({ library }) => `-I${library.sourceFolder}`);
  return {
    name: sketch.name,
    // The sketch is copied beside its generated .cpp so it compiles from relative paths.
    prepare: async (outDir) => {
      const sketchDirectory = join(outDir, 'sketch');
      await rm(sketchDirectory, { recursive: true, force: true });
      await mkdir(sketchDirectory, { recursive: true });
      const mainSource = `${sketch.name}.ino.cpp`;
      await writeFile(join(sketchDirectory, mainSource), sketch.mainSource);
      for (const file of await sketchFiles(sketch)) {
        await copyFile(join(sketch.directory, file), join(sketchDirectory, file));
      }
      return [mainSource, ...sketch.extraSources].map((source) =>
        unitFor(source, sketchDirectory, 'sketch_', ['-w', '-I.', ...sketchIncludeFlags]),
      );
    },
    archives: [...libraryArchives, coreArchive],
    libraries: resolved.map(({ library }) => ({
      name: library.name,
      version: library.version,
      folder: library.folder,
      location: library.location.kind,
    })),
  };
}

/** The core's, the user's and the --library folders' libraries that the sketch's includes call for. */
async function resolveSketchLibraries(
  sketch: Sketch,
  target: BuildTarget,
  variantDirectory: string,
  options: LibraryOptions,
): Promise<ResolvedLibrary[]> {
  const libraries: Library[] = await findLibraries({
    core: ARDUINO_CORE_LIBRARIES,
    user: options.userLibrariesDir ?? join(homedir(), 'Arduino', 'libraries'),
    options: options.libraryDirs ?? [],
  });
  const ownFiles = await sketchFiles(sketch);
  const sketchIncludes = findIncludes(sketch.mainSource);
  for (const file of ownFiles) {
    sketchIncludes.push(...findIncludes(await readFile(join(sketch.directory, file), 'utf8')));
  }
  const availableHeaders = [
    ...(await readdir(ARDUINO_CORE_DIRECTORY)),
    ...(await readdir(variantDirectory).catch(() => [])),
    ...ownFiles,
  ].filter(isHeaderFile);
  return resolveLibraries({
    sketchIncludes,
    availableHeaders,
    libraries,
    // Every board this builder knows is an AVR, compiled against the arduino:avr core.
    target: { architecture: 'avr', boardId: target.boardId },
  });
}

/** The sketch folder's own headers and sources besides the .ino files. */
async function sketchFiles(sketch: Sketch): Promise<string[]> {
  return (await readdir(sketch.directory)).filter((entry) => SKETCH_FILES.includes(extname(entry))).sort();
}

/** What boards.txt's build.usb_flags give a native-USB board (the manufacturer as it leaves it: "Unknown"). */
function usbFlags(target: BuildTarget): string[] {
  if (!target.nativeUsb) return [];
  const hex = (id: number) => `0x${id.toString(16).padStart(4, '0')}`;
  return [
    `-DUSB_VID=${hex(target.nativeUsb.vendorId)}`,
    `-DUSB_PID=${hex(target.nativeUsb.productId)}`,
    '-DUSB_MANUFACTURER="Unknown"',
    `-DUSB_PRODUCT="${target.nativeUsb.product}"`,
  ];
}

function fileSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}
