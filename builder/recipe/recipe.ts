import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type ImageRecipe, linuxImageRecipeSchema, normaliseImageRecipe } from './linux-image-recipe.ts';
import { type McuRecipe, mcuRecipeSchema, normaliseMcuRecipe } from './mcu-recipe.ts';
import { normaliseOciImageRecipe, type OciImageRecipe, ociImageRecipeSchema } from './oci-image-recipe.ts';
import type { Normalised } from './recipe-fields.ts';
import { normaliseUnikernelRecipe, type UnikernelRecipe, unikernelRecipeSchema } from './unikernel-recipe.ts';

/** The recipes that come with Boardfleet; `boardfleet build pi-minimal` looks here for `pi-minimal.yaml`. */
export const RECIPES_DIRECTORY = fileURLToPath(new URL('../../firmware-recipes', import.meta.url));
/** A recipe with files of its own (an MCU firmware's sources) is a folder holding this file. */
const FOLDER_RECIPE_FILE = 'recipe.yaml';

/** Every recipe, whatever it builds; `kind` says which. */
export type Recipe = McuRecipe | ImageRecipe | UnikernelRecipe | OciImageRecipe;
export type RecipeKind = Recipe['kind'];
type RecipeOfKind<Kind extends RecipeKind> = Extract<Recipe, { kind: Kind }>;

/** One schema for every recipe file: the `kind` key picks the schema of that kind. */
const recipeSchema = z.discriminatedUnion('kind', [
  mcuRecipeSchema,
  linuxImageRecipeSchema,
  unikernelRecipeSchema,
  ociImageRecipeSchema,
]);
type ParsedRecipe = z.infer<typeof recipeSchema>;

/** Each kind's schema, what messages call it, what it is built for, and its normalisation. */
const KINDS: {
  [Kind in RecipeKind]: {
    schema: z.ZodType<Extract<ParsedRecipe, { kind: Kind }>>;
    /** What messages call it: "not a valid image recipe", "is an image recipe". */
    name: string;
    article: 'a' | 'an';
    builtFor: string;
    normalise(parsed: Extract<ParsedRecipe, { kind: Kind }>, file: string): Normalised<RecipeOfKind<Kind>>;
  };
} = {
  'mcu-firmware': {
    schema: mcuRecipeSchema,
    name: 'mcu-firmware',
    article: 'an',
    builtFor: 'a microcontroller board, e.g. --board uno',
    normalise: normaliseMcuRecipe,
  },
  'linux-image': {
    schema: linuxImageRecipeSchema,
    name: 'image',
    article: 'an',
    builtFor: 'a Linux board, e.g. --board rpi-4b',
    normalise: normaliseImageRecipe,
  },
  unikernel: {
    schema: unikernelRecipeSchema,
    name: 'unikernel',
    article: 'a',
    builtFor: 'a virtual machine, e.g. --board vm-x86_64',
    normalise: normaliseUnikernelRecipe,
  },
  'oci-image': {
    schema: ociImageRecipeSchema,
    name: 'OCI image',
    article: 'an',
    builtFor: 'the Linux board it runs on, e.g. --board rpi-4b',
    normalise: normaliseOciImageRecipe,
  },
};

/**
 * The recipe file for a name or a path. A name (`pi-minimal`, `firmata`) is looked up in
 * `directory`: `NAME/recipe.yaml` when that folder holds one, else `NAME.yaml`. A path (one
 * holding a `/` or ending in `.yaml`) is taken as it is, or a folder's `recipe.yaml`.
 */
export function recipePath(nameOrPath: string, directory = RECIPES_DIRECTORY): string {
  if (nameOrPath.includes('/') || nameOrPath.endsWith('.yaml')) {
    const path = resolve(nameOrPath);
    return statSync(path, { throwIfNoEntry: false })?.isDirectory() ? join(path, FOLDER_RECIPE_FILE) : path;
  }
  const folderRecipe = join(directory, nameOrPath, FOLDER_RECIPE_FILE);
  return existsSync(folderRecipe) ? folderRecipe : join(directory, `${nameOrPath}.yaml`);
}

/** The names of the recipes in a folder, sorted: `NAME.yaml` files and folders holding a recipe.yaml. */
export function listRecipes(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true })
    .flatMap((entry) => {
      if (entry.isFile() && entry.name.endsWith('.yaml')) return [entry.name.slice(0, -'.yaml'.length)];
      if (entry.isDirectory() && existsSync(join(directory, entry.name, FOLDER_RECIPE_FILE)))
        return [entry.name];
      return [];
    })
    .sort();
}

/**
 * Reads and checks a recipe of any kind. Every problem is listed in one error naming the file:
 * bad keys, unknown keys, files it names that are not there.
 */
export function loadRecipe(path: string): Recipe {
  const file = resolve(path);
  const document = readRecipeDocument(file, 'recipe');
  const parsed = recipeSchema.safeParse(document);
  if (!parsed.success) throw invalidRecipe(file, recipeWords(kindOf(document)), parsed.error);
  return normalised(file, parsed.data);
}

/**
 * Reads and checks a recipe that must be of one kind (the builder of that kind's input); a recipe
 * of another kind is refused with what it is built for.
 */
export function loadRecipeOfKind<Kind extends RecipeKind>(path: string, kind: Kind): RecipeOfKind<Kind> {
  const file = resolve(path);
  const words = recipeWords(kind);
  const document = readRecipeDocument(file, words);
  const actual = kindOf(document);
  if (actual && actual !== kind) throw recipeKindMismatch(file, actual);
  const parsed = KINDS[kind].schema.safeParse(document);
  if (!parsed.success) throw invalidRecipe(file, words, parsed.error);
  return normalised(file, parsed.data as Extract<ParsedRecipe, { kind: Kind }>) as RecipeOfKind<Kind>;
}

/** A recipe given to a builder of another kind: what it is, and what to build it for. */
export function recipeKindMismatch(file: string, kind: RecipeKind): BoardfleetError {
  const { article, name, builtFor } = KINDS[kind];
  return new BoardfleetError(
    'recipe-invalid',
    `${file} is ${article} ${name} recipe: build it for ${builtFor}`,
  );
}

function readRecipeDocument(file: string, words: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new BoardfleetError(
      'recipe-not-found',
      `No ${words} at ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)}). ` +
        `Recipes are YAML files in firmware-recipes/, e.g. firmware-recipes/pi-minimal.yaml or firmware-recipes/firmata/recipe.yaml.`,
    );
  }
  try {
    return parse(text);
  } catch (error) {
    throw new BoardfleetError('recipe-invalid', `${file} is not valid YAML: ${(error as Error).message}`);
  }
}

function normalised<Kind extends RecipeKind>(
  file: string,
  parsed: Extract<ParsedRecipe, { kind: Kind }>,
): RecipeOfKind<Kind> {
  const kind = parsed.kind as Kind;
  const { recipe, problems } = KINDS[kind].normalise(parsed, file);
  if (problems.length > 0) throw invalidRecipe(file, recipeWords(kind), problems);
  return recipe;
}

function kindOf(document: unknown): RecipeKind | undefined {
  const kind = (document as { kind?: unknown } | null)?.kind;
  return typeof kind === 'string' && Object.hasOwn(KINDS, kind) ? (kind as RecipeKind) : undefined;
}

/** "image recipe", "unikernel recipe"; "recipe" when the kind is not known. */
function recipeWords(kind: RecipeKind | undefined): string {
  return kind ? `${KINDS[kind].name} recipe` : 'recipe';
}

function invalidRecipe(file: string, words: string, problems: z.ZodError | string[]): BoardfleetError {
  const lines = Array.isArray(problems)
    ? problems
    : problems.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`);
  return new BoardfleetError('recipe-invalid', `${file} is not a valid ${words}:\n  ${lines.join('\n  ')}`);
}
