import { copyFile, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, extname, join, resolve } from 'node:path';
import { sha256, sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type AvrTool, AvrToolchain } from './avr-toolchain.repository.ts';
import { type BuildTarget, resolveBuildTarget } from './build-target.ts';
import { assertRecipeSupports, type McuRecipe, recipeDefineFlags, sourcesFor } from '../recipe/mcu-recipe.ts';
import { loadRecipeOfKind, recipePath } from '../recipe/recipe.ts';
import { hashOf } from '../steps/input-hash.ts';
import { assertFits, parseBerkeleySize, type SizeReport } from './size-report.ts';
import {
  type ArchiveSpec,
  type BuildJob,
  type CompileUnit,
  C_FLAGS,
  CPP_FLAGS,
  seededFlags,
  targetFlags,
  type UsedLibrary,
} from './compile-unit.ts';
import { firstFailure, ObjectCompiler } from './object-compiler.ts';
import { type LibraryOptions, sketchJob } from './sketch-job.ts';

export type { UsedLibrary } from './compile-unit.ts';
const DEFAULT_CACHE_DIRECTORY = join(tmpdir(), 'boardfleet-build-cache');

export type BuildInput = { recipe: string; sketchPath?: never } | { sketchPath: string; recipe?: never };

export interface BuildOptions extends LibraryOptions {
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
  /** The Arduino libraries a sketch was built with, in the order its includes called for them. */
  libraries: UsedLibrary[];
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
  toolchain.ensureInstalled();
  const target = resolveBuildTarget(input.board);
  const job =
    input.recipe !== undefined
      ? await recipeJob(loadRecipeOfKind(recipePath(input.recipe), 'mcu-firmware'), target)
      : await sketchJob(input.sketchPath, target, input);
  const outDir = resolve(input.outDir ?? join('build', job.name, target.boardId));
  await rm(join(outDir, 'obj'), { recursive: true, force: true });
  await mkdir(join(outDir, 'obj'), { recursive: true });

  const compiler = new ObjectCompiler(toolchain, outDir, input.onStep);
  const compilerVersion = (await toolchain.run('avr-gcc', ['--version'], tmpdir())).stdout;
  const cacheDir = input.cacheDir ?? DEFAULT_CACHE_DIRECTORY;
  // The sketch, the libraries and the core compile side by side, sharing the compiler's slots;
  // every compile ends before the first failure is thrown, so none writes into outDir afterwards.
  const [objects, archives] = await firstFailure<string[]>([
    compiler.compileAll(await job.prepare(outDir), `compiling ${job.name}`),
    firstFailure(
      job.archives.map((archive) =>
        compileArchive(archive, compiler, cacheDir, compilerVersion, input.onStep),
      ),
    ),
  ]);
  const linkInputs = [...(objects ?? [])];
  for (const [index, archive] of job.archives.entries()) {
    const archivePath = archives?.[index] as string;
    linkInputs.push(
      ...(archive.wholeArchive
        ? ['-Wl,--whole-archive', archivePath, '-Wl,--no-whole-archive']
        : [archivePath]),
    );
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
    libraries: job.libraries,
    warnings: compiler.warnings.join('\n'),
    durationMs: Math.round(performance.now() - started),
  };
}

/** An archive's units compiled into `<outDir>/obj/<name>.a`: from the cache when nothing that shapes it changed. */
async function compileArchive(
  spec: ArchiveSpec,
  compiler: ObjectCompiler<AvrTool>,
  cacheDir: string,
  compilerVersion: string,
  onStep?: (step: string) => void,
): Promise<string> {
  const archive = join(compiler.outDir, 'obj', `${spec.name}.a`);
  const cached = join(cacheDir, `${spec.name}-${await archiveKey(spec, compilerVersion)}.a`);
  if (
    await copyFile(cached, archive).then(
      () => true,
      () => false,
    )
  ) {
    onStep?.(`using the cached ${spec.label}`);
    return archive;
  }
  const objects = await compiler.compileAll(spec.units, `compiling the ${spec.label}`);
  // "D": deterministic archive, zero timestamps and owners.
  await compiler.toolchain.run('avr-gcc-ar', ['rcsD', archive, ...objects], compiler.outDir);
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
  const size = parseBerkeleySize(sizeRun.stdout, {
    flashLimit: target.flashLimit,
    ramLimit: target.ramLimit,
  });
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
 * Names a compiled archive by everything that shapes its bytes: compiler version, flags, and
 * source and header contents. The archive is deterministic, so a cached copy equals a fresh one.
 */
async function archiveKey(spec: ArchiveSpec, compiler: string): Promise<string> {
  const sources: unknown[] = [];
  for (const unit of spec.units) {
    sources.push([
      unit.compiler,
      unit.source,
      unit.flags,
      sha256(await readFile(join(unit.cwd, unit.source))),
    ]);
  }
  const headers: unknown[] = [];
  for (const file of spec.keyFiles) headers.push([file, sha256(await readFile(file))]);
  return hashOf({ compiler, sources, headers }).slice(0, 32);
}

/** Copies under a temporary name and renames, so a concurrent build never reads half a file. */
async function storeInCache(file: string, cached: string): Promise<void> {
  await mkdir(dirname(cached), { recursive: true });
  const partial = `${cached}.${process.pid}.partial`;
  await copyFile(file, partial);
  await rename(partial, cached);
}

async function recipeJob(recipe: McuRecipe, target: BuildTarget): Promise<BuildJob> {
  assertRecipeSupports(recipe, target.boardId, target.mcu);
  const defineFlags = recipeDefineFlags(recipe, target.boardId);
  const units: CompileUnit[] = sourcesFor(recipe, 'avr').map((source) => {
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
  return { name: recipe.id, prepare: async () => units, archives: [], libraries: [] };
}
