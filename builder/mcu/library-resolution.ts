import { BoardfleetError } from '../../protocol/errors.ts';

/** Where a library folder was found; a higher `priority` wins over a lower one for the same header. */
export interface LibraryLocation {
  kind: 'core' | 'user' | 'option';
  priority: number;
}

/** An Arduino library as found on disk: what it provides, what it needs, what it runs on. */
export interface Library {
  /** From library.properties, else the folder's name. */
  name: string;
  /** From library.properties; null for a 1.0 library without one. */
  version: string | null;
  /** The library's own folder, absolute. */
  folder: string;
  /** The folder its headers and sources start in: `src/` (1.5 format) or the folder itself (1.0). */
  sourceFolder: string;
  layout: '1.5' | '1.0';
  /** `architectures` from library.properties; `*` means any. */
  architectures: string[];
  /** Header file names directly in `sourceFolder`: what `#include <X.h>` can find. */
  headers: string[];
  /** Every `#include` target in the library's own sources and headers. */
  includes: string[];
  location: LibraryLocation;
}

export interface ResolvedLibrary {
  library: Library;
  /** The other chosen libraries whose headers this one includes. */
  uses: Library[];
}

export interface ResolutionTarget {
  architecture: string;
  boardId: string;
}

const HEADER_EXTENSIONS = ['.h', '.hpp', '.hh'];

export function isHeaderFile(file: string): boolean {
  return HEADER_EXTENSIONS.some((extension) => file.endsWith(extension));
}

/** The `#include` targets of a C/C++ source, comments ignored (`#if` is not: a guarded include still counts). */
export function findIncludes(source: string): string[] {
  const withoutComments = source.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/\/\/.*$/gm, '');
  return [...withoutComments.matchAll(/^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\n]+)[>"]/gm)].map(
    (match) => match[1] as string,
  );
}

/** `key=value` lines of a library.properties file; later keys win, comments (#) skipped. */
export function parseLibraryProperties(text: string): Record<string, string> {
  const properties: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*([^#=\s][^=]*?)\s*=\s*(.*?)\s*$/.exec(line);
    if (match) properties[match[1] as string] = match[2] as string;
  }
  return properties;
}

/**
 * Picks the libraries a sketch needs, following its includes and then each chosen library's own.
 * A header that the core, the variant or the sketch itself provides (`availableHeaders`), or that no
 * library provides, is left to the compiler. Returns the libraries in the order they were chosen.
 */
export function resolveLibraries(input: {
  sketchIncludes: string[];
  availableHeaders: Iterable<string>;
  libraries: Library[];
  target: ResolutionTarget;
}): ResolvedLibrary[] {
  const available = new Set(input.availableHeaders);
  const chosen: ResolvedLibrary[] = [];
  const queue: Array<{ header: string; from: ResolvedLibrary | null }> = input.sketchIncludes.map(
    (header) => ({
      header,
      from: null,
    }),
  );
  const settled = new Set<string>();
  for (let next = queue.shift(); next; next = queue.shift()) {
    const { header, from } = next;
    if (available.has(header)) continue;
    let provider = chosen.find((resolved) => resolved.library.headers.includes(header));
    if (!provider && !settled.has(header)) {
      settled.add(header);
      const library = chooseLibrary(header, input.libraries, input.target);
      if (library) {
        provider = { library, uses: [] };
        chosen.push(provider);
        queue.push(...library.includes.map((include) => ({ header: include, from: provider ?? null })));
      }
    }
    if (provider && from && provider !== from && !from.uses.includes(provider.library)) {
      from.uses.push(provider.library);
    }
  }
  return chosen;
}

/**
 * The library that provides `header`, as arduino-builder picks it: only libraries for the board's
 * architecture; among them those whose folder is named after the header (Wire/ for Wire.h) first;
 * then the highest priority (a later folder overrides an earlier one). Two equals are an error.
 */
export function chooseLibrary(
  header: string,
  libraries: Library[],
  target: ResolutionTarget,
): Library | undefined {
  const providers = libraries.filter((library) => library.headers.includes(header));
  if (providers.length === 0) return undefined;
  const compatible = providers.filter((library) => supportsArchitecture(library, target.architecture));
  if (compatible.length === 0) {
    const [first] = sortByPreference(providers, header);
    const library = first as Library;
    throw new BoardfleetError(
      'library-architecture-unsupported',
      `library ${library.name} (architectures=${library.architectures.join(',')}) does not support ${target.architecture} boards (board ${target.boardId})`,
    );
  }
  const [best, runnerUp] = sortByPreference(compatible, header);
  if (best && runnerUp && rank(best, header).join() === rank(runnerUp, header).join()) {
    throw new BoardfleetError(
      'library-ambiguous',
      `two libraries provide ${header}: ${best.folder} and ${runnerUp.folder}; remove one, or pass the one to use with --library`,
    );
  }
  return best;
}

export function supportsArchitecture(library: Library, architecture: string): boolean {
  return library.architectures.some((name) => name === '*' || name.toLowerCase() === architecture);
}

/** Folder-name match, then priority: the higher, the better. */
function rank(library: Library, header: string): [number, number] {
  const stem = header.replace(/\.[^.]*$/, '');
  const folderName = library.folder.split('/').at(-1);
  return [folderName === stem ? 1 : 0, library.location.priority];
}

function sortByPreference(libraries: Library[], header: string): Library[] {
  return [...libraries].sort((a, b) => {
    const [nameA, priorityA] = rank(a, header);
    const [nameB, priorityB] = rank(b, header);
    return nameB - nameA || priorityB - priorityA;
  });
}

/** Every library the given one needs to compile: itself, then what it uses, transitively. */
export function includeClosure(resolved: ResolvedLibrary, all: ResolvedLibrary[]): Library[] {
  const closure: Library[] = [resolved.library];
  for (let index = 0; index < closure.length; index++) {
    const entry = all.find((candidate) => candidate.library === closure[index]);
    for (const used of entry?.uses ?? []) if (!closure.includes(used)) closure.push(used);
  }
  return closure;
}
