import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getUf2Board, type Uf2Board } from '../../../boards/board-catalogue.ts';
import { sha256 } from '../../../lib/hash.ts';
import { hasValidBoot2, sealBoot2 } from '../../../lib/rp2040-boot2.ts';
import { encodeUf2, uf2TargetOf } from '../../../lib/uf2.ts';
import { BoardfleetError } from '../../../protocol/errors.ts';
import {
  assertRecipeSupports,
  type McuRecipe,
  recipeDefineFlags,
  sourcesFor,
} from '../../recipe/mcu-recipe.ts';
import { loadRecipeOfKind, recipePath } from '../../recipe/recipe.ts';
import { firstFailure, ObjectCompiler, type ObjectUnit } from '../object-compiler.ts';
import { assertFits, parseBerkeleySize, type SizeReport } from '../size-report.ts';
import { type ArmTool, ArmToolchain } from './arm-toolchain.repository.ts';

/** Where the boot ROM runs the stage-2 boot: a fact of the chip, so the builder's, not a recipe's. */
const BOOT2_LINKER_SCRIPT = fileURLToPath(new URL('boot2.ld', import.meta.url));
const CPU_FLAGS = ['-mcpu=cortex-m0plus', '-mthumb'];
const C_FLAGS = [
  '-Os',
  '-g',
  '-std=gnu11',
  '-ffreestanding',
  '-ffunction-sections',
  '-fdata-sections',
  '-Wall',
  '-Wextra',
];

export interface Uf2BuildInput {
  /** A recipe name (`firmata`) or path, as for `buildFirmware`. */
  recipe: string;
  board: string;
  /** Where the .uf2, .elf and objects go; defaults to build/<name>/<board> under the working directory. */
  outDir?: string;
  /** Called with each step, for progress output. */
  onStep?: (step: string) => void;
  toolchain?: ArmToolchain;
}

export interface Uf2BuildResult {
  name: string;
  board: string;
  outDir: string;
  uf2Path: string;
  elfPath: string;
  /** sha256 of the .uf2: identical for identical inputs, since builds are reproducible. */
  uf2Sha256: string;
  /** Flash from the first byte (the stage-2 boot included) and RAM taken by variables. */
  size: SizeReport;
  /** Compiler warnings, if any, for the caller to show. */
  warnings: string;
  durationMs: number;
}

/**
 * Builds an `mcu-firmware` recipe for a UF2 board (the Pico) with arm-none-eabi-gcc: the stage-2
 * boot alone, sealed with the checksum the boot ROM checks; the recipe's sources linked after it
 * by the recipe's linker script; then the flash image as UF2 blocks. Byte-for-byte reproducible
 * wherever it is built (`-ffile-prefix-map`, no build id). Throws `firmware-too-big` before any
 * .uf2 exists when the image cannot fit.
 */
export async function buildUf2Firmware(input: Uf2BuildInput): Promise<Uf2BuildResult> {
  const started = performance.now();
  const toolchain = input.toolchain ?? new ArmToolchain();
  toolchain.ensureInstalled();
  const board = getUf2Board(input.board);
  const recipe = loadRecipeOfKind(recipePath(input.recipe), 'mcu-firmware');
  assertRecipeSupports(recipe, board.id, board.mcu);
  const layout = rp2040Layout(recipe);
  const outDir = resolve(input.outDir ?? join('build', recipe.id, board.id));
  const objDir = join(outDir, 'obj');
  await rm(objDir, { recursive: true, force: true });
  await mkdir(objDir, { recursive: true });

  const compiler = new ObjectCompiler(toolchain, outDir, input.onStep);
  const flags = [
    ...CPU_FLAGS,
    ...C_FLAGS,
    // Paths in debug information name the recipe and the build folder, not this machine's.
    `-ffile-prefix-map=${recipe.directory}/=${recipe.id}/`,
    `-ffile-prefix-map=${outDir}/=build/`,
    ...recipeDefineFlags(recipe, board.id),
  ];
  const unit = (source: string): ObjectUnit<ArmTool> => ({
    compiler: 'arm-none-eabi-gcc',
    source,
    cwd: recipe.directory,
    objectName: `${source.replaceAll('/', '_')}.o`,
    flags: [...flags, `-frandom-seed=${source}`],
  });
  const [boot2Objects = [], objects = []] = await firstFailure<string[]>([
    sealedBoot2(compiler, unit(layout.boot2), objDir),
    compiler.compileAll(sourcesFor(recipe, 'rp2040').map(unit), `compiling ${recipe.id}`),
  ]);

  input.onStep?.('linking');
  const elfPath = join(outDir, `${recipe.id}.elf`);
  const uf2Path = join(outDir, `${recipe.id}.uf2`);
  await toolchain
    .run(
      'arm-none-eabi-gcc',
      [
        ...CPU_FLAGS,
        '-nostartfiles',
        '--specs=nano.specs',
        '-T',
        layout.linkerScript,
        '-Wl,--gc-sections',
        '-Wl,--build-id=none',
        '-o',
        elfPath,
        ...boot2Objects,
        ...objects,
      ],
      recipe.directory,
    )
    .catch((error: unknown) => {
      throw tooBigForChip(error, recipe.id, board) ?? error;
    });
  const sizeRun = await toolchain.run('arm-none-eabi-size', ['--format=berkeley', elfPath], outDir);
  const size = parseBerkeleySize(sizeRun.stdout, { flashLimit: board.flash.size, ramLimit: board.ramSize });
  // Checked before the .uf2 exists, so no flashable image of a program that cannot fit is left behind.
  await rm(uf2Path, { force: true });
  assertFits(size, recipe.id, board.id);

  const uf2 = encodeUf2(await flashImage(toolchain, elfPath, objDir), uf2TargetOf(board));
  await writeFile(uf2Path, uf2);
  return {
    name: recipe.id,
    board: board.id,
    outDir,
    uf2Path,
    elfPath,
    uf2Sha256: sha256(uf2),
    size,
    warnings: compiler.warnings.join('\n'),
    durationMs: Math.round(performance.now() - started),
  };
}

/** The recipe's RP2040 section; normalisation has made sure a recipe listing the rp2040 has one. */
function rp2040Layout(recipe: McuRecipe): { boot2: string; linkerScript: string } {
  const section = recipe.architectures?.rp2040;
  if (!section) {
    throw new BoardfleetError('recipe-invalid', `${recipe.file} has no architectures.rp2040 section`);
  }
  return section;
}

/**
 * The stage-2 boot compiled and linked on its own, padded and sealed with its checksum, as an
 * object whose one section `.boot2` the recipe's linker script places first in flash.
 */
async function sealedBoot2(
  compiler: ObjectCompiler<ArmTool>,
  boot2: ObjectUnit<ArmTool>,
  objDir: string,
): Promise<string[]> {
  const { toolchain } = compiler;
  const [object] = await compiler.compileAll([boot2], 'compiling the stage-2 boot');
  const elf = join(objDir, 'boot2.elf');
  const bin = join(objDir, 'boot2.bin');
  await toolchain.run(
    'arm-none-eabi-gcc',
    [
      ...CPU_FLAGS,
      '-nostdlib',
      '-T',
      BOOT2_LINKER_SCRIPT,
      '-Wl,--build-id=none',
      '-o',
      elf,
      object as string,
    ],
    objDir,
  );
  await toolchain.run('arm-none-eabi-objcopy', ['-O', 'binary', elf, bin], objDir);
  const sealed = sealBoot2(await readFile(bin));
  await writeFile(join(objDir, 'boot2-sealed.S'), boot2Assembly(sealed));
  await toolchain.run(
    'arm-none-eabi-gcc',
    [...CPU_FLAGS, '-c', 'boot2-sealed.S', '-o', 'boot2-sealed.o'],
    objDir,
  );
  return [join(objDir, 'boot2-sealed.o')];
}

/** The sealed stage-2 boot as assembler source, so it links into `.boot2` like any object. */
function boot2Assembly(page: Uint8Array): string {
  const lines: string[] = [];
  for (let offset = 0; offset < page.length; offset += 16) {
    const bytes = Array.from(
      page.subarray(offset, offset + 16),
      (byte) => `0x${byte.toString(16).padStart(2, '0')}`,
    );
    lines.push(`\t.byte ${bytes.join(',')}`);
  }
  return `\t.section .boot2, "ax"\n${lines.join('\n')}\n`;
}

/** The flash contents from its first byte, checked to start with the sealed stage-2 boot. */
async function flashImage(toolchain: ArmToolchain, elfPath: string, objDir: string): Promise<Uint8Array> {
  const binPath = join(objDir, 'flash.bin');
  await toolchain.run('arm-none-eabi-objcopy', ['-O', 'binary', elfPath, binPath], objDir);
  const image = await readFile(binPath);
  if (!hasValidBoot2(image)) {
    throw new BoardfleetError(
      'build-failed',
      `${elfPath} does not start with the sealed stage-2 boot: the recipe's linker script must place section .boot2 first in flash`,
    );
  }
  return image;
}

/** The linker refuses images larger than a memory region; say so as plainly as the board check does. */
function tooBigForChip(error: unknown, name: string, board: Uf2Board): BoardfleetError | undefined {
  const overflow =
    error instanceof Error ? /region `(\w+)' overflowed by (\d+) bytes/.exec(error.message) : null;
  if (!overflow) return undefined;
  return new BoardfleetError(
    'firmware-too-big',
    `${name} does not fit the ${board.mcu} on board ${board.id}: ${overflow[2]} bytes too many for its ${overflow[1]} region. Nothing was flashed.`,
    { cause: error },
  );
}
