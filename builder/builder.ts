import { existsSync } from 'node:fs';
import { getLinuxBoard, getVmBoard } from '../boards/board-catalogue.ts';
import { BoardfleetError } from '../protocol/errors.ts';
import type { BuildReporter, BuildRequest, BuildRunner, BuiltFile } from './build-runner.ts';
import { listRecipes, loadRecipe, type RecipeKind, recipeKindMismatch, recipePath } from './recipe/recipe.ts';

/** Local builds of microcontroller firmware (the CLI's build and flash commands) enter here too. */
export { buildFirmware, type BuildInput, type BuildResult } from './mcu/build-firmware.ts';
export {
  buildUf2Firmware,
  type Uf2BuildInput,
  type Uf2BuildResult,
} from './mcu/rp2040/build-uf2-firmware.ts';
export { formatSizeReport } from './mcu/size-report.ts';

export interface BuilderOptions {
  /** Where recipes are looked up by name. */
  recipesDir: string;
  /** Downloads and finished steps, shared by every build. */
  cacheDir: string;
}

interface ArtifactBuilder {
  /** Throws, naming the boards that fit, unless the board is of the kind this builder builds for. */
  checkBoard(board: string): void;
  build(
    input: { recipeFile: string; board: string; cacheDir: string },
    reporter: BuildReporter,
  ): Promise<BuiltFile[]>;
}

/**
 * The recipe kinds the build queue builds into artifacts. Microcontroller firmware is built
 * where the board is plugged in, by `buildFirmware` (AVR) and `buildUf2Firmware` (RP2040). Each
 * builder is loaded when it first builds: the CLI loads this entry at every start, and the image
 * builders bring esbuild and tar along.
 */
const ARTIFACT_BUILDERS: Partial<Record<RecipeKind, ArtifactBuilder>> = {
  'linux-image': {
    checkBoard: getLinuxBoard,
    build: async (input, reporter) =>
      (await import('./linux-image/image-build.ts')).buildImage(input, reporter),
  },
  unikernel: {
    checkBoard: getVmBoard,
    build: async (input, reporter) =>
      (await (await import('./unikernel/unikernel-build.ts')).buildUnikernel(input, reporter)).files,
  },
  'oci-image': {
    checkBoard: getLinuxBoard,
    build: async (input, reporter) =>
      (await (await import('./oci-image/oci-image-build.ts')).buildOciImage(input, reporter)).files,
  },
};

/**
 * Checks a build request before it is queued: a recipe that loads, and a board of its kind (a
 * Linux board for an image recipe, a virtual machine for a unikernel recipe).
 */
export function validateBuildRequest(recipesDir: string, request: BuildRequest): void {
  const { builder } = artifactBuilderFor(recipesDir, request.recipe);
  builder.checkBoard(request.board);
}

/** The build queue's runner: each request is built by the builder of its recipe's kind. */
export function recipeBuildRunner(options: BuilderOptions): BuildRunner {
  return async (request, reporter) => {
    const { file, builder } = artifactBuilderFor(options.recipesDir, request.recipe);
    return builder.build({ recipeFile: file, board: request.board, cacheDir: options.cacheDir }, reporter);
  };
}

function artifactBuilderFor(recipesDir: string, name: string): { file: string; builder: ArtifactBuilder } {
  const file = recipeFile(recipesDir, name);
  const { kind } = loadRecipe(file);
  const builder = ARTIFACT_BUILDERS[kind];
  if (!builder) throw recipeKindMismatch(file, kind);
  return { file, builder };
}

function recipeFile(recipesDir: string, name: string): string {
  const file = recipePath(name, recipesDir);
  if (!existsSync(file)) {
    throw new BoardfleetError(
      'invalid-request',
      `no recipe "${name}" in ${recipesDir}; recipes: ${listRecipes(recipesDir).join(', ') || '(none)'}`,
    );
  }
  return file;
}
