import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';
import { AvrToolchain } from './avr-toolchain.repository.ts';
import { type BuildTarget, resolveBuildTarget } from './build-target.ts';
import { loadMcuRecipe, type McuRecipe } from '../recipe/mcu-recipe.ts';
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
      ? await recipeJob(await loadMcuRecipe(input.recipe), target)
      : await sketchJob(input.sketchPath, target);
  const outDir = resolve(input.outDir ?? join('build', job.name, target.boardId));
  await rm(join(outDir, 'obj'), { recursive: true, force: true });
  await mkdir(join(outDir, 'obj'), { recursive: true });

  const warnings: string[] = [];
  const compileAll = async (units: CompileUnit[], step: string): Promise<string[]> => {
    input.onStep?.(step);
    return mapLimited(units, PARALLEL_COMPILES, async (unit) => {
      const objectPath = join(outDir, 'obj', unit.objectName);
      const run = await toolchain.run(
        unit.compiler,
        [...unit.flags, '-c', unit.source, '-o', objectPath],
        unit.cwd,
      );
      if (run.stderr.trim()) warnings.push(run.stderr.trim());
      return objectPath;
    });
  };

  const linkInputs = await compileAll(await job.prepare(outDir), `compiling ${job.name}`);
  if (job.libraryUnits.length > 0) {
    const archive = join(outDir, 'obj', 'core.a');
    const cached = join(
      input.cacheDir ?? DEFAULT_CACHE_DIRECTORY,
      `core-${await libraryKey(job.libraryUnits, toolchain)}.a`,
    );
    if (
      await copyFile(cached, archive).then(
        () => true,
        () => false,
      )
    ) {
      input.onStep?.('using the cached Arduino core');
    } else {
      const libraryObjects = await compileAll(job.libraryUnits, 'compiling the Arduino core');
      // "D": deterministic archive, zero timestamps and owners.
      await toolchain.run('avr-gcc-ar', ['rcsD', archive, ...libraryObjects], outDir);
      await storeInCache(archive, cached);
    }
    linkInputs.push(archive);
  }

  input.onStep?.('linking');
  const elfPath = join(outDir, `${job.name}.elf`);
  const hexPath = join(outDir, `${job.name}.hex`);
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
      throw tooBigForChip(error, job.name, target) ?? error;
    });
  const sizeRun = await toolchain.run('avr-size', ['--format=berkeley', elfPath], outDir);
  const size = parseAvrSize(sizeRun.stdout, { flashLimit: target.flashLimit, ramLimit: target.ramLimit });
  // Checked before the .hex exists, so no flashable image of a program that cannot fit is left behind.
  await rm(hexPath, { force: true });
  assertFits(size, job.name, target.boardId);
  await toolchain.run('avr-objcopy', ['-O', 'ihex', '-R', '.eeprom', elfPath, hexPath], outDir);
  const hexSha256 = createHash('sha256')
    .update(await readFile(hexPath))
    .digest('hex');
  return {
    name: job.name,
    board: target.boardId,
    outDir,
    hexPath,
    elfPath,
    hexSha256,
    size,
    warnings: warnings.join('\n'),
    durationMs: Math.round(performance.now() - started),
  };
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
  const hash = createHash('sha256');
  hash.update((await toolchain.run('avr-gcc', ['--version'], tmpdir())).stdout);
  for (const unit of units) {
    hash.update(JSON.stringify([unit.compiler, unit.source, unit.flags]));
    hash.update(await readFile(join(unit.cwd, unit.source)));
  }
  return hash.digest('hex').slice(0, 32);
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
