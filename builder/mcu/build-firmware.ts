import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { sha256, sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { AvrToolchain } from './avr-toolchain.repository.ts';
import { type BuildTarget, resolveBuildTarget } from './build-target.ts';
import type { McuRecipe } from '../recipe/mcu-recipe.ts';
import { loadRecipeOfKind, recipePath } from '../recipe/recipe.ts';
import { hashOf } from '../steps/input-hash.ts';
import { assertFits, parseAvrSize, type SizeReport } from './size-report.ts';
import { readSketch } from './sketch-source.ts';

const ARDUINO_AVR_DIRECTORY = '/usr/share/arduino/hardware/arduino/avr';
const ARDUINO_CORE_DIRECTORY = join(ARDUINO_AVR_DIRECTORY, 'cores/arduino');
/** Reported to sketches as the ARDUINO macro: the version of Debian's arduino-core-avr. */
const ARDUINO_IDE_VERSION = '10807';
const PARALLEL_COMPILES = 2;
const DEFAULT_CACHE_DIRECTORY = join(tmpdir(), 'boardfleet-build-cache');

export type BuildInput = { recipe: string; sketchPath?: never } | { sketchPath: string; recipe?: never };

export interface BuildOptions {
  board: string;
  /** Where the .hex, .elf and objects go; defaults to build/<name>/<board> under the working directory. */
  outDir?: string;
  toolchain?: AvrToolchain;
  /** Where compiled Arduino cores are kept between builds; defaults to a folder in the system temp directory. */
  cacheDir?: string;
  /** Called with each step, for progress output. */
  onStep?: (step: string) => void;
}

export interface BuildResult {
  name: string;
  board: string;
  outDir: string;
  hexPath: string;
  elfPath: string;
  /** sha256 of the .hex: identical for identical inputs, since builds are reproducible. */
  hexSha256: string;
  size: SizeReport;
  /** Compiler warnings, if any, for the caller to show. */
  warnings: string;
  durationMs: number;
}

/**
 * Builds an `mcu-firmware` recipe or an Arduino sketch for a board into a .hex and .elf.
 * Byte-for-byte reproducible: fixed flags, relative source paths, no timestamps, fixed random
 * seeds. Throws `firmware-too-big` when the image cannot fit the board, before any flashing.
 */
export async function buildFirmware(input: BuildInput & BuildOptions): Promise<BuildResult> {
  const started = performance.now();
  const toolchain = input.toolchain ?? new AvrToolchain();
  await toolchain.ensureInstalled();
  const target = resolveBuildTarget(input.board);
  const job =
    input.recipe !== undefined
      ? await recipeJob(loadRecipeOfKind(recipePath(input.recipe), 'mcu-firmware'), target)
      : await sketchJob(input.sketchPath, target);
  const outDir = resolve(input.outDir ?? join('build', job.name, target.boardId));
  await rm(join(outDir, 'obj'), { recursive: true, force: true });
  await mkdir(join(outDir, 'obj'), { recursive: true });

  const compiler = new ObjectCompiler(toolchain, outDir, input.onStep);
  const linkInputs = await compiler.compileAll(await job.prepare(outDir), `compiling ${job.name}`);
  if (job.libraryUnits.length > 0) {
    const cacheDir = input.cacheDir ?? DEFAULT_CACHE_DIRECTORY;
    linkInputs.push(await libraryArchive(job.libraryUnits, compiler, cacheDir, input.onStep));
  }
  input.onStep?.('linking');
  const { elfPath, hexPath, size } = await linkFirmware(toolchain, job.name, target, outDir, linkInputs);
  return {
    name: job.name,
    board: target.boardId,
    outDir,
    hexPath,
    elfPath,
    hexSha256: await sha256File(hexPath),
    size,
    warnings: compiler.warnings.join('\n'),
    durationMs: Math.round(performance.now() - started),
  };
}

/** Compiles units into `<outDir>/obj`, a few at a time, keeping the compiler's warnings. */
class ObjectCompiler {
  readonly warnings: string[] = [];

  constructor(
    readonly toolchain: AvrToolchain,
    readonly outDir: string,
    private readonly onStep?: (step: string) => void,
  ) {}

  /** The object files, in the order of the units. */
  async compileAll(units: CompileUnit[], step: string): Promise<string[]> {
    this.onStep?.(step);
    return mapLimited(units, PARALLEL_COMPILES, async (unit) => {
      const objectPath = join(this.outDir, 'obj', unit.objectName);
      const run = await this.toolchain.run(
        unit.compiler,
        [...unit.flags, '-c', unit.source, '-o', objectPath],
        unit.cwd,
      );
      if (run.stderr.trim()) this.warnings.push(run.stderr.trim());
      return objectPath;
    });
  }
}

/** The library units (the Arduino core) as one archive: from the cache when they are unchanged. */
async function libraryArchive(
  units: CompileUnit[],
  compiler: ObjectCompiler,
  cacheDir: string,
  onStep?: (step: string) => void,
): Promise<string> {
  const archive = join(compiler.outDir, 'obj', 'core.a');
  const cached = join(cacheDir, `core-${await libraryKey(units, compiler.toolchain)}.a`);
  if (
    await copyFile(cached, archive).then(
      () => true,
      () => false,
    )
  ) {
    onStep?.('using the cached Arduino core');
    return archive;
  }
  const libraryObjects = await compiler.compileAll(units, 'compiling the Arduino core');
  // "D": deterministic archive, zero timestamps and owners.
  await compiler.toolchain.run('avr-gcc-ar', ['rcsD', archive, ...libraryObjects], compiler.outDir);
  await storeInCache(archive, cached);
  return archive;
}

/** Links the .elf, checks it fits the board, and only then writes the .hex. */
async function linkFirmware(
  toolchain: AvrToolchain,
  name: string,
  target: BuildTarget,
  outDir: string,
  linkInputs: string[],
): Promise<{ elfPath: string; hexPath: string; size: SizeReport }> {
  const elfPath = join(outDir, `${name}.elf`);
  const hexPath = join(outDir, `${name}.hex`);
  await toolchain
    .run(
      'avr-gcc',
      [
        ...targetFlags(target),
        '-Os',
        '-flto',
        '-fuse-linker-plugin',
        '-Wl,--gc-sections',
        '-o',
        elfPath,
        ...linkInputs,
        '-lm',
      ],
      outDir,
    )
    .catch((error: unknown) => {
      throw tooBigForChip(error, name, target) ?? error;
    });
  const sizeRun = await toolchain.run('avr-size', ['--format=berkeley', elfPath], outDir);
  const size = parseAvrSize(sizeRun.stdout, { flashLimit: target.flashLimit, ramLimit: target.ramLimit });
  // Checked before the .hex exists, so no flashable image of a program that cannot fit is left behind.
  await rm(hexPath, { force: true });
  assertFits(size, name, target.boardId);
  await toolchain.run('avr-objcopy', ['-O', 'ihex', '-R', '.eeprom', elfPath, hexPath], outDir);
  return { elfPath, hexPath, size };
}

/** The linker refuses images larger than the chip itself; say so as plainly as the board check does. */
function tooBigForChip(error: unknown, name: string, target: BuildTarget): BoardfleetError | undefined {
  const overflow =
    error instanceof Error ? /region `(text|data)' overflowed by (\d+) bytes/.exec(error.message) : null;
  if (!overflow) return undefined;
  const memory = overflow[1] === 'text' ? 'flash' : 'RAM';
  return new BoardfleetError(
    'firmware-too-big',
    `${name} does not fit the ${target.mcu} on board ${target.boardId}: ${overflow[2]} bytes too many for its ${memory}. Nothing was flashed.`,
    { cause: error },
  );
}

/**
 * Names a compiled library by everything that shapes its bytes: compiler version, flags and
 * source contents. The archive is deterministic, so a cached copy equals a fresh one.
 */
async function libraryKey(units: CompileUnit[], toolchain: AvrToolchain): Promise<string> {
  const compiler = (await toolchain.run('avr-gcc', ['--version'], tmpdir())).stdout;
  const sources: unknown[] = [];
  for (const unit of units) {
    sources.push([
      unit.compiler,
      unit.source,
      unit.flags,
      sha256(await readFile(join(unit.cwd, unit.source))),
    ]);
  }
  return hashOf({ compiler, sources }).slice(0, 32);
}

/** Copies under a temporary name and renames, so a concurrent build never reads half a file. */
async function storeInCache(file: string, cached: string): Promise<void> {
  await mkdir(dirname(cached), { recursive: true });
  const partial = `${cached}.${process.pid}.partial`;
  await copyFile(file, partial);
  await rename(partial, cached);
}

interface CompileUnit {
  compiler: 'avr-gcc' | 'avr-g++';
  /** Relative to `cwd`, so no absolute path reaches the object (__FILE__, symbol names). */
  source: string;
  cwd: string;
  objectName: string;
  flags: string[];
}

interface BuildJob {
  name: string;
  /** Writes any generated sources under outDir and lists what to compile and link. */
  prepare(outDir: string): Promise<CompileUnit[]>;
  /** Compiled into an archive, so the linker takes only what is used. */
  libraryUnits: CompileUnit[];
}

function targetFlags(target: BuildTarget): string[] {
  return [`-mmcu=${target.mcu}`, `-DF_CPU=${target.fCpu}UL`];
}

function seededFlags(source: string): string[] {
  // GCC otherwise seeds some generated names (LTO sections, anonymous namespaces) randomly.
  return [`-frandom-seed=${source}`];
}

const C_FLAGS = [
  '-Os',
  '-std=gnu11',
  '-ffunction-sections',
  '-fdata-sections',
  '-flto',
  '-fno-fat-lto-objects',
];
const CPP_FLAGS = [
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

async function recipeJob(recipe: McuRecipe, target: BuildTarget): Promise<BuildJob> {
  if (!recipe.mcus.includes(target.mcu)) {
    throw new BoardfleetError(
      'board-unsupported',
      `Recipe ${recipe.id} supports ${recipe.mcus.join(', ')}, but board ${target.boardId} has an ${target.mcu}`,
    );
  }
  const [major = '0', minor = '0'] = recipe.version.split('.');
  const defines = {
    ...recipe.defines,
    ...(recipe.boardDefines[target.boardId] ?? {}),
    FIRMWARE_VERSION_MAJOR: major,
    FIRMWARE_VERSION_MINOR: minor,
  };
  const defineFlags = Object.entries(defines)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `-D${name}=${value}`);
  const units: CompileUnit[] = recipe.sources.map((source) => {
    const isCpp = ['.cpp', '.cc'].includes(extname(source));
    return {
      compiler: isCpp ? 'avr-g++' : 'avr-gcc',
      source,
      cwd: recipe.directory,
      objectName: `${source.replaceAll('/', '_')}.o`,
      flags: [
        ...targetFlags(target),
        ...(isCpp ? CPP_FLAGS : C_FLAGS),
        '-Wall',
        '-Wextra',
        ...defineFlags,
        ...seededFlags(source),
      ],
    };
  });
  return { name: recipe.id, prepare: async () => units, libraryUnits: [] };
}

async function sketchJob(sketchPath: string, target: BuildTarget): Promise<BuildJob> {
  const sketch = await readSketch(sketchPath);
  const variantDirectory = join(ARDUINO_AVR_DIRECTORY, 'variants', target.arduinoVariant);
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
  const coreSources = (await readdir(ARDUINO_CORE_DIRECTORY))
    .filter((file) => ['.c', '.cpp', '.S'].includes(extname(file)))
    .sort();
  if (coreSources.length === 0) {
    throw new BoardfleetError(
      'toolchain-missing',
      `The Arduino core is missing from ${ARDUINO_CORE_DIRECTORY}. Install it with: sudo apt-get install arduino-core-avr`,
    );
  }
  return {
    name: sketch.name,
    // The sketch is copied beside its generated .cpp so it compiles from relative paths.
    prepare: async (outDir) => {
      const sketchDirectory = join(outDir, 'sketch');
      await rm(sketchDirectory, { recursive: true, force: true });
      await mkdir(sketchDirectory, { recursive: true });
      const mainSource = `${sketch.name}.ino.cpp`;
      await writeFile(join(sketchDirectory, mainSource), sketch.mainSource);
      for (const file of (await readdir(sketch.directory)).filter((entry) =>
        ['.h', '.hpp', '.c', '.cpp', '.S'].includes(extname(entry)),
      )) {
        await copyFile(join(sketch.directory, file), join(sketchDirectory, file));
      }
      return [mainSource, ...sketch.extraSources].map((source) =>
        unitFor(source, sketchDirectory, 'sketch_', ['-w', '-I.']),
      );
    },
    libraryUnits: coreSources.map((source) => unitFor(source, ARDUINO_CORE_DIRECTORY, 'core_', ['-w'])),
  };
}

async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
