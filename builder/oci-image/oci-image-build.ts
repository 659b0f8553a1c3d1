import { readFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { getLinuxBoard, type LinuxBoard } from '../../boards/board-catalogue.ts';
import { sha256File } from '../../lib/hash.ts';
import { APP_BUNDLE_MANIFEST, appBundleManifestSchema } from '../../protocol/app-bundle-manifest.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { fetchNodeRuntime, type NodeRuntime } from '../agent-runtime/node-runtime.repository.ts';
import type { BuildReporter, BuiltFile } from '../build-runner.ts';
import {
  debianComponent,
  fetchWithProgress,
  NEVER_INSTALLED,
  openDebianArchive,
} from '../debian/build-archive.ts';
import type { ResolvedPackage } from '../debian/debian-archive.repository.ts';
import { LibraryResolver } from '../linux-image/rootfs/library-resolver.ts';
import { TreeWriter } from '../linux-image/rootfs/tree-writer.ts';
import type { OciImageRecipe } from '../recipe/oci-image-recipe.ts';
import { loadRecipeOfKind } from '../recipe/recipe.ts';
import { builderSourcesHash, hashOf } from '../steps/input-hash.ts';
import { imageSbomHeader, nodeRuntimeComponent, writeSbom } from '../steps/sbom.ts';
import { stagedOutput } from '../steps/staged-output.ts';
import { type OciRunConfig, writeOciLayout } from './oci-layout.ts';

/** What the Node runtime links against. */
const NODE_LIBRARY_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1'];
/** Where the app bundle lives in the image, and its working directory. */
const APP_DIRECTORY = '/app';
const NODE_PATH = '/usr/bin/node';
/** Debian's architecture names → the image-spec's (Go's GOARCH) and npm's. */
const ARCHITECTURE = { arm64: { oci: 'arm64', node: 'arm64' } } as const;

export interface OciImageBuildInput {
  recipeFile: string;
  /** A Linux board: the image is built for its architecture. */
  board: string;
  cacheDir: string;
  /** Seconds since 1970 for every timestamp; default SOURCE_DATE_EPOCH, else the Debian Release date. */
  sourceDateEpoch?: number;
  /** Where finished builds are kept; default `<cacheDir>/image-steps`. */
  stepsDir?: string;
}

export interface OciImageBuildResult {
  files: BuiltFile[];
  /** Hash of every input: recipe, app bundle, Node, libraries, builder code, epoch. */
  inputsHash: string;
  image: string;
  sbom: string;
  reused: boolean;
}

/**
 * Builds an `oci-image` recipe: the app bundle at /app, Node at /usr/bin/node with the C libraries
 * it needs from Debian, as one layer of an OCI image layout (a tar) whose Entrypoint is the
 * bundle's `start`. Cached by the hash of its inputs; the same inputs give the same bytes.
 */
export async function buildOciImage(
  input: OciImageBuildInput,
  reporter: BuildReporter,
): Promise<OciImageBuildResult> {
  const recipe = loadRecipeOfKind(input.recipeFile, 'oci-image');
  const board = getLinuxBoard(input.board);
  const architecture = ARCHITECTURE[board.architecture];
  const runConfig = imageRunConfig(recipe);
  const stepsDir = input.stepsDir ?? join(input.cacheDir, 'image-steps');
  await mkdir(stepsDir, { recursive: true });
  const work = await mkdtemp(join(input.cacheDir, 'work-'));
  try {
    reporter.progress('reading the Debian archive index', 2);
    const base = { ...recipe.base, components: ['main'] };
    const { archive, epoch } = await openDebianArchive(base, board.architecture, input, reporter);
    const libraries = archive.resolve(NODE_LIBRARY_PACKAGES, { exclude: NEVER_INSTALLED });
    reporter.log(`packages: ${libraries.map((pkg) => `${pkg.name}=${pkg.version}`).join(' ')}`);
    reporter.progress('fetching packages', 5);
    await fetchWithProgress(archive, libraries, reporter, 5, 40);
    reporter.progress('fetching the Node runtime', 40);
    const node = await fetchNodeRuntime({
      architecture: architecture.node,
      versionRange: recipe.node,
      cacheDir: input.cacheDir,
      signal: reporter.signal,
    });
    reporter.log(`Node ${node.version} (${node.packageName}, sha256 ${node.sha256.slice(0, 12)})`);
    const bundle = await folderFingerprint(recipe.appBundle);
    const { file: _file, appBundle: _appBundle, ...content } = recipe;
    const inputsHash = hashOf({
      recipe: content,
      bundle,
      board: board.id,
      node: node.sha256,
      libraries: libraries.map((pkg) => pkg.sha256),
      builder: builderSourcesHash(),
      epoch,
    });
    reporter.log(`inputs ${inputsHash.slice(0, 16)}`);

    const outputDir = join(stepsDir, `oci-image-${inputsHash}`);
    const baseName = `${recipe.name}-${recipe.version}-${board.id}`;
    const image = join(outputDir, `${baseName}.oci.tar`);
    const sbom = join(outputDir, `${baseName}.spdx.json`);
    const reused = await stagedOutput(outputDir, async (staging) => {
      reporter.progress('assembling the layer', 50);
      const rootDir = join(work, 'root');
      const tree = await TreeWriter.create(rootDir);
      const trees = await Promise.all(
        libraries.map(async (pkg) => ({
          name: pkg.name,
          root: (await archive.unpack(pkg, { signal: reporter.signal })).root,
        })),
      );
      await new LibraryResolver(tree, trees, board, new Set()).install(node.binary, 'the Node runtime');
      await tree.copy(node.binary, NODE_PATH.slice(1), 0o755);
      await tree.copyTree(recipe.appBundle, APP_DIRECTORY.slice(1));
      // The C library reads these to look names up; the image's own user is root (nobody on the device).
      await tree.file('etc/hosts', '127.0.0.1 localhost\n::1 localhost\n');
      await tree.file('etc/nsswitch.conf', 'hosts: files dns\n');
      await tree.file('etc/passwd', `root:x:0:0:root:${APP_DIRECTORY}:/usr/sbin/nologin\n`);
      await tree.file('etc/group', 'root:x:0:\n');
      reporter.progress('writing the OCI image layout', 70);
      const { digest } = await writeOciLayout({
        rootDir,
        config: runConfig,
        architecture: architecture.oci,
        epoch,
        refName: recipe.version,
        workDir: join(work, 'layout'),
        outFile: join(staging, `${baseName}.oci.tar`),
      });
      reporter.log(`image manifest ${digest}`);
      await writeOciSbom(
        recipe,
        board,
        { epoch, inputsHash, node, libraries, mirror: recipe.base.mirror },
        staging,
        baseName,
      );
    });
    reporter.log(
      `OCI image ${(await stat(image)).size} bytes, sha256 ${(await sha256File(image)).slice(0, 16)}${reused ? ' (cached)' : ''}`,
    );
    reporter.progress('done', 98);
    const file = (role: BuiltFile['role'], path: string, name: string, kind: BuiltFile['kind']) => ({
      role,
      path,
      name,
      version: recipe.version,
      kind,
      boards: [board.id],
    });
    return {
      files: [
        file('oci-image', image, recipe.name, 'oci-image'),
        file('sbom', sbom, `${recipe.name}-sbom`, 'sbom'),
      ],
      inputsHash,
      image,
      sbom,
      reused,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The image's run configuration from the bundle's boardfleet-app.json: its `start` (a leading
 * `node` is the image's Node) run from /app with its `env`, the recipe's ports exposed.
 */
export function imageRunConfig(recipe: OciImageRecipe): OciRunConfig {
  const path = join(recipe.appBundle, APP_BUNDLE_MANIFEST);
  let parsed;
  try {
    parsed = appBundleManifestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  } catch (error) {
    throw new BoardfleetError('bad-bundle', `${path} is not JSON: ${(error as Error).message}`);
  }
  if (!parsed.success)
    throw new BoardfleetError(
      'bad-bundle',
      `${path}: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`,
    );
  const [program = '', ...args] = parsed.data.start;
  const env = Object.entries(parsed.data.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    Entrypoint: [program === 'node' ? NODE_PATH : program, ...args],
    Env: ['PATH=/usr/bin:/bin', ...env.map(([name, value]) => `${name}=${value}`)],
    WorkingDir: APP_DIRECTORY,
    ...(recipe.ports.length > 0
      ? { ExposedPorts: Object.fromEntries(recipe.ports.map((port) => [`${port}/tcp`, {}])) }
      : {}),
    Labels: {
      'org.opencontainers.image.title': recipe.name,
      'org.opencontainers.image.version': recipe.version,
    },
  };
}

/** Each file's path, mode and sha256 under `dir`, sorted: what the bundle's bytes in the image depend on. */
async function folderFingerprint(dir: string, inside = ''): Promise<unknown[]> {
  const entries: unknown[] = [];
  for (const name of (await readdir(join(dir, inside))).sort()) {
    const path = inside ? `${inside}/${name}` : name;
    const info = await lstat(join(dir, path));
    if (info.isDirectory()) entries.push({ path, mode: info.mode }, ...(await folderFingerprint(dir, path)));
    else
      entries.push({
        path,
        mode: info.mode,
        sha256: info.isFile() ? await sha256File(join(dir, path)) : null,
      });
  }
  return entries;
}

async function writeOciSbom(
  recipe: OciImageRecipe,
  board: LinuxBoard,
  parts: {
    epoch: number;
    inputsHash: string;
    node: NodeRuntime;
    libraries: ResolvedPackage[];
    mirror: string;
  },
  staging: string,
  baseName: string,
): Promise<void> {
  await writeSbom(join(staging, `${baseName}.spdx.json`), {
    ...imageSbomHeader({ recipe, board, epoch: parts.epoch }, parts.inputsHash),
    components: [
      nodeRuntimeComponent(parts.node),
      ...parts.libraries.map((pkg) => debianComponent(pkg, parts.mirror, board.architecture)),
    ],
  });
}
