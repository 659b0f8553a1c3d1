// The pairs of versions the delta benchmark compares, built with the real builders: pi-minimal
// and three changes to it, an app bundle before and after one dependency changed, and the
// http-hello unikernel before and after its kernel command line changed. Recipes are written
// under the build cache at fixed paths and built into its usual step folder, so a rerun reuses
// every build.
import { execFile } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { getLinuxBoard } from '../boards/board-catalogue.ts';
import type { BuildReporter } from '../builder/build-runner.ts';
import { openDebianArchive, pickKernelPackage } from '../builder/debian/build-archive.ts';
import { buildImageWithDetails } from '../builder/linux-image/image-build.ts';
import { loadRecipeOfKind, recipePath } from '../builder/recipe/recipe.ts';
import { buildUnikernel } from '../builder/unikernel/unikernel-build.ts';

export interface VersionPair {
  previous: string;
  next: string;
  /** How the two differ, for the benchmark's header. */
  change: string;
}

const IMAGE_BOARD = 'rpi-4b';
const UNIKERNEL_BOARD = 'vm-x86_64';
const exec = promisify(execFile);
const quiet: BuildReporter = { signal: new AbortController().signal, log: () => {}, progress: () => {} };

/** Writes a recipe variant at a fixed path under the cache, where the next run's builds find their steps again. */
function writeRecipe(cacheDir: string, name: string, text: string, siblings: string[] = []): string {
  const directory = join(cacheDir, 'delta-bench', 'recipes', name);
  mkdirSync(directory, { recursive: true });
  // The unikernel's C source is named relative to its recipe: point at the checkout's.
  for (const sibling of siblings) {
    const link = join(directory, sibling);
    if (!existsSync(link)) symlinkSync(join(recipePath(sibling), '..', sibling), link);
  }
  const file = join(directory, 'recipe.yaml');
  writeFileSync(file, text);
  return file;
}

function edit(text: string, from: string | RegExp, to: string): string {
  const edited = text.replace(from, to);
  if (edited === text)
    throw new Error(`the recipe no longer has ${String(from)}: update bench/delta-inputs.ts`);
  return edited;
}

export interface ImagePairs {
  oneFile: VersionPair;
  changedPackage: VersionPair;
  newKernel: VersionPair;
}

/**
 * pi-minimal 1.0.0 and: 1.0.1 with one line of /etc/motd changed; 1.1.0 with i2c-tools added;
 * and, as the previous version of 1.0.0, a 0.9.0 built on the kernel package before the one
 * Debian's metapackage names now (the board's kernel package is set for that build only).
 */
export async function buildImagePairs(cacheDir: string): Promise<ImagePairs> {
  const base = readFileSync(recipePath('pi-minimal'), 'utf8');
  const motd = edit(
    edit(base, "/data keeps the agent's state.", "/data keeps the agent's state!"),
    /^version: 1\.0\.0$/m,
    'version: 1.0.1',
  );
  const withPackage = edit(
    edit(base, 'packages: []', 'packages: [i2c-tools]'),
    /^version: 1\.0\.0$/m,
    'version: 1.1.0',
  );
  const older = edit(base, /^version: 1\.0\.0$/m, 'version: 0.9.0');
  const build = async (name: string, text: string) =>
    (
      await buildImageWithDetails(
        { recipeFile: writeRecipe(cacheDir, name, text), board: IMAGE_BOARD, cacheDir },
        quiet,
      )
    ).updatePayload;

  const current = await build('pi-minimal', base);
  const kernels = await kernelPackages(cacheDir);
  const board = getLinuxBoard(IMAGE_BOARD);
  const metapackage = board.kernel.package;
  // The catalogue's board object is what the builder reads; it is restored before anything else builds.
  board.kernel.package = kernels.previous;
  let previousKernel: string;
  try {
    previousKernel = await build('pi-minimal-previous-kernel', older);
  } finally {
    board.kernel.package = metapackage;
  }
  return {
    oneFile: {
      previous: current,
      next: await build('pi-minimal-motd', motd),
      change: 'one line of /etc/motd, 1.0.0 → 1.0.1',
    },
    changedPackage: {
      previous: current,
      next: await build('pi-minimal-i2c-tools', withPackage),
      change: 'i2c-tools added, 1.0.0 → 1.1.0',
    },
    newKernel: {
      previous: previousKernel,
      next: current,
      change: `${kernels.previous} → ${kernels.current}, 0.9.0 → 1.0.0`,
    },
  };
}

/** The versioned kernel package the board gets now, and the newest older one the archive still has. */
async function kernelPackages(cacheDir: string): Promise<{ current: string; previous: string }> {
  const recipe = loadRecipeOfKind(recipePath('pi-minimal'), 'linux-image');
  const board = getLinuxBoard(IMAGE_BOARD);
  const { archive } = await openDebianArchive(recipe.base, board.architecture, { cacheDir }, quiet);
  const current = pickKernelPackage(archive, board).name;
  const abi = current.match(/^(linux-image-\d+\.\d+\.\d+-)(\d+)(-.+)$/);
  if (abi) {
    for (let number = Number(abi[2]) - 1; number > 0; number--) {
      const name = `${abi[1]}${number}${abi[3]}`;
      if (archive.find(name)) return { current, previous: name };
    }
  }
  throw new Error(
    `the Debian archive has no kernel package older than ${current}: the new-kernel case needs two`,
  );
}

/** http-hello 2.0.0, and 2.0.1 with `loglevel=4` added to its kernel command line. */
export async function buildUnikernelPair(cacheDir: string): Promise<VersionPair> {
  const base = readFileSync(recipePath('http-hello'), 'utf8');
  const changed = edit(`${base}kernel: { cmdline: [loglevel=4] }\n`, /^version: 2\.0\.0$/m, 'version: 2.0.1');
  const build = async (name: string, text: string) =>
    (
      await buildUnikernel(
        { recipeFile: writeRecipe(cacheDir, name, text, ['http-hello']), board: UNIKERNEL_BOARD, cacheDir },
        quiet,
      )
    ).bundle;
  return {
    previous: await build('http-hello', base),
    next: await build('http-hello-loglevel', changed),
    change: 'loglevel=4 added to the kernel command line, 2.0.0 → 2.0.1',
  };
}

/** The npm packages of the app bundle: an MQTT client and a logger, with everything they need. */
const APP_DEPENDENCIES = ['mqtt', 'pino', 'zod'];
/** The dependency that changes between the two versions, by a patch release. */
const CHANGED_DEPENDENCY = 'debug';
const APP_EPOCH = new Date('2025-01-01T00:00:00Z');

/**
 * An app bundle as README packs one (`tar czf`, boardfleet-app.json at its top) with its
 * node_modules copied from this checkout's, twice: with an older release of `debug` found nested
 * in node_modules, and with the hoisted one. Also the same two compressed with `gzip --rsyncable`,
 * which restarts its stream where the content says so and so keeps a change from reaching the
 * rest of the file. Made again each run (a few seconds), so they follow node_modules.
 */
export async function buildAppBundlePairs(
  work: string,
): Promise<{ gzip: VersionPair; rsyncable: VersionPair }> {
  const modules = new URL('../node_modules/', import.meta.url).pathname;
  const closure = dependencyClosure(modules, APP_DEPENDENCIES);
  const hoisted = join(modules, CHANGED_DEPENDENCY);
  const hoistedVersion = packageVersion(hoisted);
  const older = findNested(modules, CHANGED_DEPENDENCY).find(
    (path) => packageVersion(path) !== hoistedVersion,
  );
  if (!older)
    throw new Error(`node_modules holds one version of ${CHANGED_DEPENDENCY}: the app case needs two`);
  const change = `${CHANGED_DEPENDENCY} ${packageVersion(older)} → ${hoistedVersion}, 1.0.0 → 1.0.1 (${closure.length} npm packages)`;
  const bundles = { gzip: { change } as VersionPair, rsyncable: { change } as VersionPair };
  for (const [version, dependency, role] of [
    ['1.0.0', older, 'previous'],
    ['1.0.1', hoisted, 'next'],
  ] as const) {
    const tree = join(work, `app-${version}`);
    rmSync(tree, { recursive: true, force: true });
    mkdirSync(join(tree, 'node_modules'), { recursive: true });
    for (const name of closure) {
      const source = name === CHANGED_DEPENDENCY ? dependency : join(modules, name);
      cpSync(source, join(tree, 'node_modules', name), { recursive: true, dereference: true });
    }
    writeFileSync(
      join(tree, 'package.json'),
      `${JSON.stringify({ name: 'telemetry', version, type: 'module' }, null, 2)}\n`,
    );
    writeFileSync(
      join(tree, 'boardfleet-app.json'),
      `${JSON.stringify({ start: ['node', 'app.mjs'], healthCheck: { http: 'http://127.0.0.1:8081/healthz' } }, null, 2)}\n`,
    );
    writeFileSync(
      join(tree, 'app.mjs'),
      "import mqtt from 'mqtt';\nimport pino from 'pino';\nexport { mqtt, pino };\n",
    );
    const options = { cwd: tree, portable: true, noDirRecurse: true, mtime: APP_EPOCH };
    const files = listTree(tree);
    bundles.gzip[role] = join(work, `telemetry-${version}.tar.gz`);
    await tar.c({ ...options, gzip: true, file: bundles.gzip[role] }, files);
    const plain = join(work, `telemetry-${version}.tar`);
    await tar.c({ ...options, file: plain }, files);
    bundles.rsyncable[role] = join(work, `telemetry-${version}.rsyncable.tar.gz`);
    await exec('sh', ['-c', 'gzip -n --rsyncable -c "$1" > "$2"', 'sh', plain, bundles.rsyncable[role]]);
  }
  return bundles;
}

/** The packages `roots` need, read from the hoisted node_modules (a package's own nested ones come with it). */
function dependencyClosure(modules: string, roots: string[]): string[] {
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const manifest = JSON.parse(readFileSync(join(modules, name, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dependency of Object.keys(manifest.dependencies ?? {})) visit(dependency);
  };
  for (const root of roots) visit(root);
  return [...seen].sort();
}

function packageVersion(directory: string): string {
  return (JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Copies of `name` nested in other packages' node_modules, two levels down at most. */
function findNested(modules: string, name: string): string[] {
  const found: string[] = [];
  const packages = readdirSync(modules).flatMap((entry) =>
    entry.startsWith('@') ? readdirSync(join(modules, entry)).map((scoped) => `${entry}/${scoped}`) : [entry],
  );
  for (const pkg of packages) {
    const nested = join(modules, pkg, 'node_modules', name);
    if (existsSync(join(nested, 'package.json'))) found.push(nested);
  }
  return found.sort();
}

/** Every path in a tree, sorted, directories before what they hold: the tar's fixed order. */
function listTree(root: string): string[] {
  return readdirSync(root, { recursive: true })
    .map(String)
    .map((path) => relative(root, join(root, path)))
    .sort();
}
