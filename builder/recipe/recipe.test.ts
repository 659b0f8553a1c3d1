import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listRecipes, loadRecipe, loadRecipeOfKind, RECIPES_DIRECTORY, recipePath } from './recipe.ts';

function recipeFile(text: string, name = 'test.yaml'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'recipe-')), name);
  writeFileSync(path, text);
  return path;
}

describe('recipes of every kind', () => {
  it('loads each recipe that comes with Boardfleet as its kind says', () => {
    const kinds = Object.fromEntries(
      listRecipes(RECIPES_DIRECTORY).map((name) => [name, loadRecipe(recipePath(name)).kind]),
    );
    expect(kinds).toEqual({
      'agent-vm': 'unikernel',
      firmata: 'mcu-firmware',
      'http-hello': 'unikernel',
      'hello-container': 'oci-image',
      'http-hello-specialised': 'unikernel',
      'pi-containers': 'linux-image',
      'pi-minimal': 'linux-image',
      'pi-with-app': 'linux-image',
    });
  });

  it('finds a recipe with files of its own as the recipe.yaml of its folder, by name or by path', () => {
    const firmata = join(RECIPES_DIRECTORY, 'firmata/recipe.yaml');
    expect(recipePath('firmata')).toBe(firmata);
    expect(recipePath(join(RECIPES_DIRECTORY, 'firmata'))).toBe(firmata);
    // pi-with-app/ holds the app's files, not a recipe: the name is pi-with-app.yaml's.
    expect(recipePath('pi-with-app')).toBe(join(RECIPES_DIRECTORY, 'pi-with-app.yaml'));
    const recipe = loadRecipeOfKind(firmata, 'mcu-firmware');
    expect(recipe).toMatchObject({ id: 'firmata', directory: join(RECIPES_DIRECTORY, 'firmata') });
  });

  it('names the kinds it knows when a recipe has none of them', () => {
    const path = recipeFile('kind: android-app\nname: x\n');
    expect(() => loadRecipe(path)).toThrow(`${path} is not a valid recipe:\n  kind: `);
  });

  it('refuses a recipe given to the builder of another kind, saying what to build it for', () => {
    expect(() => loadRecipeOfKind(recipePath('pi-minimal'), 'mcu-firmware')).toThrow(
      'is an image recipe: build it for a Linux board, e.g. --board rpi-4b',
    );
    expect(() => loadRecipeOfKind(recipePath('firmata'), 'unikernel')).toThrow(
      'is an mcu-firmware recipe: build it for a microcontroller board, e.g. --board uno',
    );
  });

  it('keeps the sources of a firmware recipe inside its folder', () => {
    const path = recipeFile(
      'kind: mcu-firmware\nid: escape\nversion: 1.0.0\nlanguage: c\nsources: [../main.c, /etc/x.c]\nmcus: [atmega328p]\n',
      'recipe.yaml',
    );
    expect(() => loadRecipe(path)).toThrow(
      `${path} is not a valid mcu-firmware recipe:\n  sources.0: "../main.c" must stay inside the recipe folder\n  sources.1: "/etc/x.c" must stay inside the recipe folder`,
    );
  });
});
