import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmBoard } from '../../boards/board-catalogue.ts';
import { sha256, sha256File } from '../../lib/hash.ts';
import { bundleAgent } from '../agent-runtime/agent-bundle.ts';
import { fetchNodeRuntime, type NodeRuntime } from '../agent-runtime/node-runtime.repository.ts';
import type { CrossCompiler } from '../native/cross-compiler.repository.ts';
import { buildStaticProgram } from '../native/static-program.ts';
import type { UnikernelRecipe } from '../recipe/unikernel-recipe.ts';
import { hashOf, packageVersion } from '../steps/input-hash.ts';
import { bundleComponents, nodeRuntimeComponent, type SbomComponent } from '../steps/sbom.ts';
import { bundleNodeEntry } from './node-entry-bundle.ts';

const PRE_INIT_SOURCE = fileURLToPath(new URL('./pre-init/boardfleet-init.c', import.meta.url));
const NODE_ARCHITECTURE: Record<VmBoard['architecture'], 'x64' | 'arm64'> = { amd64: 'x64', arm64: 'arm64' };

/** The application as the initramfs gets it: a static program, or Node plus one bundled module. */
export type UnikernelApplication =
  | { kind: 'c'; program: string; describe: string; fingerprint: string; sbom: SbomComponent[] }
  | {
      kind: 'node';
      node: NodeRuntime;
      module: string;
      describe: string;
      fingerprint: string;
      sbom: SbomComponent[];
    };

export interface ApplicationBuildOptions {
  work: string;
  cacheDir: string;
  compiler: CrossCompiler;
  signal: AbortSignal;
}

/** The pre-init (boardfleet-init), compiled statically for the VM; the kernel runs it first. */
export function buildPreInit(compiler: CrossCompiler, cacheDir: string): Promise<string> {
  return buildStaticProgram({
    name: 'boardfleet-init',
    sources: [PRE_INIT_SOURCE],
    flags: ['-Os', '-Wall', '-Wextra', '-Werror'],
    sourceRoot: dirname(PRE_INIT_SOURCE),
    compiler,
    cacheDir,
  });
}

/** The recipe's one program: its C sources compiled statically, or Node with its entry (or the agent) bundled. */
export async function buildApplication(
  recipe: UnikernelRecipe,
  board: VmBoard,
  options: ApplicationBuildOptions,
): Promise<UnikernelApplication> {
  return recipe.app.c
    ? buildCApplication(recipe, recipe.app.c, options)
    : buildNodeApplication(recipe, board, options);
}

async function buildCApplication(
  recipe: UnikernelRecipe,
  c: { sources: string[]; cflags: string[] },
  options: ApplicationBuildOptions,
): Promise<UnikernelApplication> {
  const program = await buildStaticProgram({
    name: recipe.name,
    sources: c.sources,
    flags: c.cflags,
    sourceRoot: dirname(recipe.file),
    compiler: options.compiler,
    cacheDir: options.cacheDir,
  });
  const hash = await sha256File(program);
  return {
    kind: 'c',
    program,
    describe: `static C program ${recipe.name}, ${(await stat(program)).size} bytes`,
    fingerprint: hash,
    sbom: [
      {
        name: recipe.name,
        version: recipe.version,
        purl: `pkg:generic/${recipe.name}@${recipe.version}`,
        downloadLocation: 'NOASSERTION',
        sha256: hash,
        supplier: 'NOASSERTION',
      },
    ],
  };
}

async function buildNodeApplication(
  recipe: UnikernelRecipe,
  board: VmBoard,
  options: ApplicationBuildOptions,
): Promise<UnikernelApplication> {
  const nodeApp = recipe.app.node!;
  const node = await fetchNodeRuntime({
    architecture: NODE_ARCHITECTURE[board.architecture],
    versionRange: nodeApp.version,
    cacheDir: options.cacheDir,
    signal: options.signal,
  });
  const outFile = join(options.work, `${recipe.name}.mjs`);
  const bundle = nodeApp.boardfleetAgent
    ? await bundleAgent({ outFile, cacheDir: join(options.cacheDir, 'agent-bundle') })
    : await bundleNodeEntry({ entry: nodeApp.entry!, outFile });
  const bundleName = nodeApp.boardfleetAgent ? 'boardfleet-agent' : recipe.name;
  const bundleVersion = nodeApp.boardfleetAgent ? packageVersion() : recipe.version;
  return {
    kind: 'node',
    node,
    module: bundle.file,
    describe: `Node ${node.version} with ${bundleName} (${bundle.size} bytes)`,
    fingerprint: hashOf({ node: node.sha256, bundle: bundle.sha256 }),
    sbom: [
      nodeRuntimeComponent(node),
      ...bundleComponents({
        name: bundleName,
        version: bundleVersion,
        sha256: bundle.sha256,
        supplier: nodeApp.boardfleetAgent ? 'Organization: Boardfleet' : 'NOASSERTION',
        packages: bundle.packages,
      }),
    ],
  };
}

/** The recipe's content and its sources' bytes, without this checkout's paths. */
export function recipeFingerprint(recipe: UnikernelRecipe): string {
  const { file, ...content } = recipe;
  const relativeTo = (path: string) => relative(dirname(file), path);
  const { c, node } = content.app;
  const sources = [...(c?.sources ?? []), ...(node?.entry ? [node.entry] : [])].map((source) => ({
    path: relativeTo(source),
    sha256: sha256(readFileSync(source)),
  }));
  return hashOf({
    content: {
      ...content,
      app: {
        ...content.app,
        c: c ? { ...c, sources: c.sources.map(relativeTo) } : null,
        node: node ? { ...node, entry: node.entry ? relativeTo(node.entry) : null } : null,
      },
    },
    sources,
  });
}
