import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join, relative, resolve } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  findIncludes,
  isHeaderFile,
  type Library,
  type LibraryLocation,
  parseLibraryProperties,
} from './library-resolution.ts';

const SOURCE_EXTENSIONS = ['.c', '.cpp', '.S'];
/** Folders inside a library that hold no library code (arduino-builder skips them too). */
const NOT_LIBRARY_CODE = new Set(['examples', 'extras']);

/** Where libraries are looked for, lowest priority first. */
export interface LibrarySearchPath {
  /** The Arduino core's own libraries (Wire, SPI, EEPROM, SoftwareSerial, HID). */
  core: string;
  /** ~/Arduino/libraries: skipped when it does not exist. */
  user: string;
  /** `--library DIR` folders in the order given: each one a library, or a folder of libraries. */
  options: string[];
}

/** Every library in the search path; a `--library` folder that does not exist is an error. */
export async function findLibraries(searchPath: LibrarySearchPath): Promise<Library[]> {
  const libraries = [
    ...(await librariesIn(searchPath.core, { kind: 'core', priority: 0 })),
    ...(await librariesIn(searchPath.user, { kind: 'user', priority: 1 })),
  ];
  for (const [index, option] of searchPath.options.entries()) {
    const folder = resolve(option);
    if (!(await isDirectory(folder))) {
      throw new BoardfleetError('library-folder-not-found', `No library folder at ${option} (--library)`);
    }
    const location: LibraryLocation = { kind: 'option', priority: 2 + index };
    libraries.push(
      ...((await looksLikeLibrary(folder))
        ? [await readLibrary(folder, location)]
        : await librariesIn(folder, location)),
    );
  }
  return libraries;
}

/** The library's .c, .cpp and .S files, relative to its source folder, sorted. */
export async function librarySources(library: Library): Promise<string[]> {
  return (await libraryFiles(library)).filter((file) => SOURCE_EXTENSIONS.includes(extname(file)));
}

/**
 * The files that make up a library's code, relative to its source folder: all of `src/`
 * (1.5 format), or the folder itself and `utility/` (1.0 format).
 */
export async function libraryFiles(library: Pick<Library, 'layout' | 'sourceFolder'>): Promise<string[]> {
  const files =
    library.layout === '1.5'
      ? await filesUnder(library.sourceFolder, library.sourceFolder)
      : [
          ...(await filesIn(library.sourceFolder)),
          ...(await filesIn(join(library.sourceFolder, 'utility'))).map((file) => `utility/${file}`),
        ];
  return files.sort();
}

async function librariesIn(folder: string, location: LibraryLocation): Promise<Library[]> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  const libraries: Library[] = [];
  for (const entry of entries.filter((item) => item.isDirectory() && !item.name.startsWith('.'))) {
    const libraryFolder = join(folder, entry.name);
    if (await looksLikeLibrary(libraryFolder)) libraries.push(await readLibrary(libraryFolder, location));
  }
  // Code-point order, not the locale's: the same on every machine.
  return libraries.sort((a, b) => (a.folder < b.folder ? -1 : 1));
}

/** A library has a library.properties, a src/ folder, or a header of its own at the top. */
async function looksLikeLibrary(folder: string): Promise<boolean> {
  const entries = await readdir(folder);
  return (
    entries.includes('library.properties') ||
    (await isDirectory(join(folder, 'src'))) ||
    entries.some(isHeaderFile)
  );
}

async function readLibrary(folder: string, location: LibraryLocation): Promise<Library> {
  const propertiesText = await readFile(join(folder, 'library.properties'), 'utf8').catch(() => null);
  const properties = propertiesText === null ? {} : parseLibraryProperties(propertiesText);
  const layout = propertiesText !== null && (await isDirectory(join(folder, 'src'))) ? '1.5' : '1.0';
  const sourceFolder = layout === '1.5' ? join(folder, 'src') : folder;
  const files = await libraryFiles({ layout, sourceFolder });
  const includes = new Set<string>();
  for (const file of files.filter(
    (name) => isHeaderFile(name) || SOURCE_EXTENSIONS.includes(extname(name)),
  )) {
    for (const include of findIncludes(await readFile(join(sourceFolder, file), 'utf8')))
      includes.add(include);
  }
  return {
    name: properties.name || basename(folder),
    version: properties.version || null,
    folder,
    sourceFolder,
    layout,
    architectures: (properties.architectures || '*').split(',').map((name) => name.trim()),
    headers: (await filesIn(sourceFolder)).filter(isHeaderFile).sort(),
    includes: [...includes],
    location,
  };
}

/** Plain files directly in a folder; none when it does not exist. */
async function filesIn(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
}

async function filesUnder(folder: string, root: string): Promise<string[]> {
  const files: string[] = [];
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const path = join(folder, entry.name);
    if (entry.isDirectory() && !NOT_LIBRARY_CODE.has(entry.name))
      files.push(...(await filesUnder(path, root)));
    if (entry.isFile()) files.push(relative(root, path));
  }
  return files;
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
}
