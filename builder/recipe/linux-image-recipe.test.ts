import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadRecipeOfKind, RECIPES_DIRECTORY, recipePath } from './recipe.ts';

const loadRecipe = (path: string) => loadRecipeOfKind(path, 'linux-image');

function recipeFile(text: string): string {
  const directory = mkdtempSync(join(tmpdir(), 'recipe-'));
  const path = join(directory, 'test.yaml');
  writeFileSync(path, text);
  return path;
}

function errorOf(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected an error');
}

describe('image recipes', () => {
  it('loads pi-minimal with the defaults filled in', () => {
    const recipe = loadRecipe(recipePath('pi-minimal'));
    expect(recipe).toMatchObject({
      kind: 'linux-image',
      name: 'pi-minimal',
      version: '1.0.0',
      base: {
        mirror: 'http://deb.debian.org/debian',
        suite: 'bookworm',
        components: ['main', 'non-free-firmware'],
      },
      packages: [],
      agent: { include: true, node: '20' },
      partitions: { boot: 256, root: 256, data: 256 },
      squashfs: { compression: 'zstd' },
      hostname: 'boardfleet',
      caCertificates: false,
      debugShell: false,
      file: join(RECIPES_DIRECTORY, 'pi-minimal.yaml'),
    });
    expect(recipe.appBundle).toBeUndefined();
    expect(recipe.overlay).toEqual([
      {
        path: '/etc/motd',
        mode: 0o644,
        content: "Boardfleet pi-minimal: the root filesystem is read-only; /data keeps the agent's state.\n",
        sourcePath: null,
      },
    ]);
  });

  it('loads pi-with-app with its app bundle and overlay source resolved beside the recipe', () => {
    const recipe = loadRecipe(recipePath('pi-with-app'));
    expect(recipe.appBundle).toEqual({
      path: 'pi-with-app/hello',
      name: 'hello',
      version: '1.0.0',
      kind: 'directory',
      absolutePath: join(RECIPES_DIRECTORY, 'pi-with-app/hello'),
    });
    expect(recipe.overlay[1]).toEqual({
      path: '/etc/boardfleet/hello.env',
      mode: 0o644,
      content: null,
      sourcePath: join(RECIPES_DIRECTORY, 'pi-with-app/hello.env'),
    });
    expect(recipe.caCertificates).toBe(true);
  });

  it('finds a recipe by name in firmware-recipes/, or takes a path as it is', () => {
    expect(recipePath('pi-minimal')).toBe(join(RECIPES_DIRECTORY, 'pi-minimal.yaml'));
    expect(recipePath('pi-minimal', '/srv/recipes')).toBe('/srv/recipes/pi-minimal.yaml');
    expect(recipePath('/tmp/mine.yaml')).toBe('/tmp/mine.yaml');
  });

  it('lists every bad key of a bad recipe in one error', () => {
    const path = recipeFile(
      [
        'kind: linux-image',
        'name: Bad Name',
        'version: one',
        'base: { mirror: "ftp://example.org/debian", suite: "Bookworm!", components: [] }',
        'packages: [Bad_Package]',
        'overlay:',
        '  - { path: etc/motd, content: hi, mode: 644 }',
        '  - { path: /proc/cpuinfo, content: hi, source: x }',
        '  - { path: /sbin/init, content: "#!/bin/sh" }',
        'agent: { include: true, node: "latest??" }',
        'partitions: { boot: 8, root: 256 }',
        'squashfs: { compression: brotli }',
        'kernelCmdline: ["quiet splash"]',
        'hostname: -bad-',
        'colour: blue',
      ].join('\n'),
    );
    const message = errorOf(() => loadRecipe(path));
    expect(message).toContain(`${path} is not a valid image recipe:`);
    for (const expected of [
      'name: lower-case letters, digits and dashes',
      'version: a version such as 1.2.3',
      'base.mirror: an http(s) URL of a Debian mirror',
      'base.suite: a Debian suite such as bookworm',
      'base.components: Too small',
      'packages.0: a Debian package name',
      'overlay.0.path: an absolute path to a file',
      "overlay.0.mode: a quoted octal string such as '0644'",
      'overlay.1.path: not under /proc',
      'overlay.1: give exactly one of content or source',
      'overlay.2.path: not one of the files the builder writes',
      'agent.node: a version range such as 20',
      'partitions.boot: at least 64 MiB',
      'partitions.data: Invalid input',
      'squashfs.compression: Invalid option',
      'kernelCmdline.0: one parameter per entry',
      'hostname: a host name',
      'colour',
    ]) {
      expect(message).toContain(expected);
    }
  });

  it('names overlay sources and app bundles that are not there, together', () => {
    const path = recipeFile(
      [
        'kind: linux-image',
        'name: missing-files',
        'version: 1.0.0',
        'overlay:',
        '  - { path: /etc/app.conf, source: files/app.conf }',
        'appBundle: { path: apps/hello.zip, name: hello, version: 1.0.0 }',
        'partitions: { boot: 128, root: 128, data: 64 }',
      ].join('\n'),
    );
    const directory = join(path, '..');
    const message = errorOf(() => loadRecipe(path));
    expect(message).toContain(`overlay.0.source: ${join(directory, 'files/app.conf')} is not a file`);
    expect(message).toContain(
      `appBundle.path: ${join(directory, 'apps/hello.zip')} is neither a folder nor a .tar, .tar.gz or .tgz file`,
    );

    mkdirSync(join(directory, 'files'));
    writeFileSync(join(directory, 'files/app.conf'), 'x=1\n');
    mkdirSync(join(directory, 'apps/hello'), { recursive: true });
    writeFileSync(path, readFileSync(path, 'utf8').replace('apps/hello.zip', 'apps/hello'));
    expect(errorOf(() => loadRecipe(path))).toContain(
      `appBundle.path: ${join(directory, 'apps/hello')} has no boardfleet-app.json at its top`,
    );
    writeFileSync(join(directory, 'apps/hello/boardfleet-app.json'), '{"start":["node","app.mjs"]}');
    expect(loadRecipe(path).appBundle?.absolutePath).toBe(join(directory, 'apps/hello'));
  });

  it('refuses an app bundle in an image without the agent that runs it', () => {
    const directory = mkdtempSync(join(tmpdir(), 'recipe-'));
    mkdirSync(join(directory, 'app'));
    writeFileSync(join(directory, 'app/boardfleet-app.json'), '{}');
    const path = join(directory, 'no-agent.yaml');
    writeFileSync(
      path,
      [
        'kind: linux-image',
        'name: no-agent',
        'version: 1.0.0',
        'agent: { include: false }',
        'appBundle: { path: app, name: app, version: 1.0.0 }',
        'partitions: { boot: 128, root: 128, data: 64 }',
      ].join('\n'),
    );
    expect(errorOf(() => loadRecipe(path))).toContain(
      'appBundle: the agent runs app bundles: set agent.include to true',
    );
  });

  it('says what other kinds of recipe are and what they are built for', () => {
    expect(errorOf(() => loadRecipe(recipeFile('kind: unikernel\nname: u\n')))).toContain(
      'is a unikernel recipe: build it for a virtual machine, e.g. --board vm-x86_64',
    );
    expect(errorOf(() => loadRecipe(join(RECIPES_DIRECTORY, 'firmata/recipe.yaml')))).toContain(
      'is an mcu-firmware recipe: build it for a microcontroller board',
    );
    expect(errorOf(() => loadRecipe('/nonexistent/pi.yaml'))).toContain(
      'No image recipe at /nonexistent/pi.yaml (ENOENT)',
    );
    expect(errorOf(() => loadRecipe(recipeFile('kind: [unclosed')))).toContain('is not valid YAML');
  });
});
