import { dirname, isAbsolute } from 'node:path';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { Normalised } from './recipe-fields.ts';

const defineValue = z.union([z.string(), z.number()]).transform(String);
const sourceList = z.array(z.string().min(1)).min(1);

/** The instruction sets a recipe can build for, each with its own compiler and start-up. */
export const ARCHITECTURES = ['avr', 'rp2040'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/**
 * Sources added for the MCUs of one architecture. An RP2040 image also needs its stage-2 boot
 * (compiled and sealed on its own) and the linker script that places it first in flash.
 */
const architecturesSchema = z.strictObject(
  {
    avr: z.strictObject({ sources: sourceList }).optional(),
    rp2040: z
      .strictObject({ sources: sourceList, boot2: z.string().min(1), linkerScript: z.string().min(1) })
      .optional(),
  },
  {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown architecture ${issue.keys.map((key) => `"${key}"`).join(', ')}: known are ${ARCHITECTURES.join(', ')}`
        : undefined,
  },
);

/** An `mcu-firmware` recipe (firmware-recipes/<id>/recipe.yaml): C or C++ sources built with avr-gcc or arm-none-eabi-gcc. */
export const mcuRecipeSchema = z.object({
  kind: z.literal('mcu-firmware'),
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'version must look like 1.2.3'),
  description: z.string().optional(),
  language: z.enum(['c', 'c++']),
  /** Compiled for every MCU; with `architectures`, each MCU's architecture adds its own. */
  sources: sourceList,
  architectures: architecturesSchema.optional(),
  mcus: z.array(z.string().min(1)).min(1),
  defines: z.record(z.string(), defineValue).default({}),
  boardDefines: z.record(z.string(), z.record(z.string(), defineValue)).default({}),
});

type ParsedMcuRecipe = z.infer<typeof mcuRecipeSchema>;

export type McuRecipe = ParsedMcuRecipe & {
  /** The recipe file. */
  file: string;
  /** Directory holding recipe.yaml; `sources` are relative to it. */
  directory: string;
};

/** The architecture of an MCU named as board files name it (atmega328p, rp2040), or undefined. */
export function architectureOf(mcu: string): Architecture | undefined {
  if (mcu.startsWith('atmega')) return 'avr';
  if (mcu === 'rp2040') return 'rp2040';
  return undefined;
}

/** Everything compiled for an MCU of `architecture`: the common sources, then the architecture's own. */
export function sourcesFor(recipe: McuRecipe, architecture: Architecture): string[] {
  return [...recipe.sources, ...(recipe.architectures?.[architecture]?.sources ?? [])];
}

/**
 * Files are compiled from the recipe's folder by relative path; one outside it is refused. Each
 * MCU needs its architecture's section once the recipe has `architectures`, and an RP2040 needs
 * it in any case: its stage-2 boot and linker script are named there.
 */
export function normaliseMcuRecipe(parsed: ParsedMcuRecipe, file: string): Normalised<McuRecipe> {
  const problems = recipeFiles(parsed).flatMap(([key, path]) =>
    isAbsolute(path) || path.split('/').includes('..')
      ? [`${key}: "${path}" must stay inside the recipe folder`]
      : [],
  );
  for (const [index, mcu] of parsed.mcus.entries()) {
    const architecture = architectureOf(mcu);
    if (!architecture) {
      problems.push(`mcus.${index}: "${mcu}" is not an MCU we build for (atmega…, rp2040)`);
      continue;
    }
    if (!parsed.architectures?.[architecture] && (parsed.architectures || architecture === 'rp2040')) {
      const fields = architecture === 'rp2040' ? ' (sources, boot2, linkerScript)' : '';
      problems.push(`mcus.${index}: "${mcu}" needs an architectures.${architecture} section${fields}`);
    }
  }
  return { recipe: { ...parsed, file, directory: dirname(file) }, problems };
}

/** Every path a recipe names, with its key for messages. */
function recipeFiles(parsed: ParsedMcuRecipe): Array<[string, string]> {
  const files: Array<[string, string]> = parsed.sources.map((source, index) => [`sources.${index}`, source]);
  for (const [architecture, section] of Object.entries(parsed.architectures ?? {})) {
    const key = `architectures.${architecture}`;
    files.push(
      ...section.sources.map((source, index): [string, string] => [`${key}.sources.${index}`, source]),
    );
    if ('boot2' in section)
      files.push([`${key}.boot2`, section.boot2], [`${key}.linkerScript`, section.linkerScript]);
  }
  return files;
}

/** Refuses a board whose MCU the recipe does not list. */
export function assertRecipeSupports(recipe: McuRecipe, boardId: string, mcu: string): void {
  if (recipe.mcus.includes(mcu)) return;
  throw new BoardfleetError(
    'board-unsupported',
    `Recipe ${recipe.id} supports ${recipe.mcus.join(', ')}, but board ${boardId} has an ${mcu}`,
  );
}

/**
 * The `-D` flags of a build for a board, sorted: the recipe's defines, the board's own, and the
 * version's major.minor as FIRMWARE_VERSION_MAJOR/MINOR.
 */
export function recipeDefineFlags(recipe: McuRecipe, boardId: string): string[] {
  const [major = '0', minor = '0'] = recipe.version.split('.');
  const defines = {
    ...recipe.defines,
    ...(recipe.boardDefines[boardId] ?? {}),
    FIRMWARE_VERSION_MAJOR: major,
    FIRMWARE_VERSION_MINOR: minor,
  };
  return Object.entries(defines)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, value]) => `-D${name}=${value}`);
}
