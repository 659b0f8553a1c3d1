import { dirname, isAbsolute } from 'node:path';
import { z } from 'zod';
import type { Normalised } from './recipe-fields.ts';

const defineValue = z.union([z.string(), z.number()]).transform(String);

/** An `mcu-firmware` recipe (firmware-recipes/<id>/recipe.yaml): C or C++ sources built with avr-gcc. */
export const mcuRecipeSchema = z.object({
  kind: z.literal('mcu-firmware'),
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'version must look like 1.2.3'),
  description: z.string().optional(),
  language: z.enum(['c', 'c++']),
  sources: z.array(z.string().min(1)).min(1),
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

/** Sources are compiled from the recipe's folder by relative path; one outside it is refused. */
export function normaliseMcuRecipe(parsed: ParsedMcuRecipe, file: string): Normalised<McuRecipe> {
  const problems = parsed.sources.flatMap((source, index) =>
    isAbsolute(source) || source.split('/').includes('..')
      ? [`sources.${index}: "${source}" must stay inside the recipe folder`]
      : [],
  );
  return { recipe: { ...parsed, file, directory: dirname(file) }, problems };
}
