import type { BuildTarget } from './build-target.ts';
import type { ObjectUnit } from './object-compiler.ts';

/** One source file to compile into one object with avr-gcc. */
export type CompileUnit = ObjectUnit<'avr-gcc' | 'avr-g++'>;

/** Sources compiled once into a deterministic archive, cached by a hash of what shapes its bytes. */
export interface ArchiveSpec {
  /** File-name safe: names the archive and its cache entry. */
  name: string;
  /** For progress steps: "compiling the <label>", "using the cached <label>". */
  label: string;
  units: CompileUnit[];
  /** Further files (headers) whose contents go into the cache key, absolute. */
  keyFiles: string[];
  /**
   * Linked whole, every object kept, as arduino-builder links libraries (an interrupt handler
   * nothing calls still belongs in the image); otherwise the linker takes only what is used, as for the core.
   */
  wholeArchive: boolean;
}

/** An Arduino library a sketch build used, for the size report and the JSON. */
export interface UsedLibrary {
  name: string;
  version: string | null;
  folder: string;
  /** core: the Arduino core's libraries; user: ~/Arduino/libraries; option: a --library folder. */
  location: 'core' | 'user' | 'option';
}

export interface BuildJob {
  name: string;
  /** Writes any generated sources under outDir and lists what to compile and link. */
  prepare(outDir: string): Promise<CompileUnit[]>;
  archives: ArchiveSpec[];
  libraries: UsedLibrary[];
}

export function targetFlags(target: BuildTarget): string[] {
  return [`-mmcu=${target.mcu}`, `-DF_CPU=${target.fCpu}UL`];
}

export function seededFlags(source: string): string[] {
  // GCC otherwise seeds some generated names (LTO sections, anonymous namespaces) randomly.
  return [`-frandom-seed=${source}`];
}

export const C_FLAGS = [
  '-Os',
  '-std=gnu11',
  '-ffunction-sections',
  '-fdata-sections',
  '-flto',
  '-fno-fat-lto-objects',
];
export const CPP_FLAGS = [
  '-Os',
  '-std=gnu++11',
  '-fpermissive',
  '-fno-exceptions',
  '-fno-threadsafe-statics',
  '-ffunction-sections',
  '-fdata-sections',
  '-flto',
  '-fno-fat-lto-objects',
];
