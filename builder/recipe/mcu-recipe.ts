import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';

const RECIPES_DIRECTORY = resolve(import.meta.dirname, '../../firmware-recipes');

const defineValue = z.union([z.string(), z.number()]).transform(String);

const mcuRecipeSchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  kind: z.literal('mcu-firmware'),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'version must look like 1.2.3'),
  description: z.string().optional(),
  language: z.enum(['c', 'c++']),
  sources: z.array(z.string().min(1)).min(1),
  mcus: z.array(z.string().min(1)).min(1),
  defines: z.record(z.string(), defineValue).default({}),
  boardDefines: z.record(z.string(), z.record(z.string(), defineValue)).default({}),
});

export type McuRecipe = z.infer<typeof mcuRecipeSchema> & {
  /** Directory holding recipe.yaml; `sources` are relative to it. */
  directory: string;
};

/**
 * Loads an `mcu-firmware` recipe by id (a folder under firmware-recipes/) or by the path of
 * its recipe.yaml or folder.
 */
export async function loadMcuRecipe(idOrPath: string): Promise<McuRecipe> {
  const looksLikePath = idOrPath.includes('/') || idOrPath.endsWith('.yaml');
  const candidate = looksLikePath ? resolve(idOrPath) : join(RECIPES_DIRECTORY, idOrPath);
  const file = candidate.endsWith('.yaml') ? candidate : join(candidate, 'recipe.yaml');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new BoardfleetError(
      'recipe-not-found',
      `No firmware recipe "${idOrPath}" (looked for ${file}). Recipes live in firmware-recipes/<id>/recipe.yaml.`,
    );
  }
  const parsed = mcuRecipeSchema.safeParse(parse(text));
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new BoardfleetError(
      'recipe-invalid',
      `Recipe ${file} is not a valid mcu-firmware recipe: ${problems.join('; ')}`,
    );
  }
  const recipe = { ...parsed.data, directory: dirname(file) };
  for (const source of recipe.sources) {
    if (isAbsolute(source) || source.split('/').includes('..')) {
      throw new BoardfleetError(
        'recipe-invalid',
        `Recipe ${file}: source "${source}" must stay inside the recipe folder`,
      );
    }
  }
  return recipe;
}
