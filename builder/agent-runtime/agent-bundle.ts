import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildFailure, type Metafile, type Plugin, version as esbuildVersion } from 'esbuild';
import { sha256 } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ENTRY = 'device-agent/image-entry.ts';
const ROOT_PACKAGE_JSON = join(REPO_ROOT, 'package.json');

/**
 * Native addons: a board's image carries no node_modules, so these stay out of the bundle and
 * must only be loaded lazily (serialport, when an Arduino-class board is attached).
 */
const NATIVE_MODULES = ['@serialport/bindings-cpp', 'better-sqlite3'];

/**
 * CommonJS dependencies call `require` for Node's built-in modules; an ES module has none, so
 * the bundle makes one. `import.meta.url` keeps it free of this machine's paths.
 */
export const REQUIRE_BANNER =
  "import { createRequire as __bundleCreateRequire } from 'node:module';\n" +
  'const require = __bundleCreateRequire(import.meta.url);';

export interface AgentBundle {
  /** The bundle, as written to `outFile`. */
  file: string;
  sha256: string;
  size: number;
  /** The npm packages inside the bundle, sorted by name (for the SBOM). */
  packages: Array<{ name: string; version: string }>;
}

interface CacheRecord {
  /** What decides the output besides the inputs: esbuild's version and this bundler's source. */
  toolchain: string;
  /** Every file esbuild read, relative to the repository, with its sha256. */
  inputs: Record<string, string>;
  bundle: Omit<AgentBundle, 'file'>;
}

/**
 * Bundles the device agent into one ES module that runs with nothing but `node` (20 or newer):
 * `node agent.mjs --config FILE --data-dir DIR`. The output depends only on the sources and
 * dependencies (no paths of this machine, no source map, no timestamps), so two builds of the
 * same checkout have the same sha256.
 *
 * Not minified: a device's error logs then show readable stack traces, and the ~1.3 MB that
 * minifying saves would hardly show in an image that carries a ~100 MB Node binary.
 *
 * With `cacheDir`, the last bundle is reused while esbuild, this bundler and every input file
 * are unchanged (checked by content).
 */
export async function bundleAgent(options: { outFile: string; cacheDir?: string }): Promise<AgentBundle> {
  const outFile = resolve(options.outFile);
  const cache = options.cacheDir ? join(resolve(options.cacheDir), 'agent-bundle') : null;
  const toolchain = sha256(`esbuild ${esbuildVersion}\n${readFileSync(fileURLToPath(import.meta.url))}`);
  const cached = cache ? reusableBundle(cache, toolchain) : null;
  if (cached) {
    writeAtomically(outFile, cached.contents);
    return { file: outFile, ...cached.bundle };
  }

  const { contents, metafile } = await runEsbuild();
  const chain = eagerNativeImport(metafile);
  if (chain) {
    throw new BoardfleetError(
      'agent-bundle-native-import',
      `the agent loads the native module ${chain.at(-1)} as it starts (${chain.join(' → ')}); ` +
        'an image carries no node_modules: import it with `await import()` where it is needed',
    );
  }
  const bundle = { sha256: sha256(contents), size: contents.length, packages: bundledPackages(metafile) };
  writeAtomically(outFile, contents);
  if (cache) {
    mkdirSync(cache, { recursive: true });
    writeAtomically(join(cache, `${bundle.sha256}.mjs`), contents);
    const inputs = Object.fromEntries(
      Object.keys(metafile.inputs)
        .sort()
        .map((input) => [input, sha256(readFileSync(join(REPO_ROOT, input)))]),
    );
    const recordFile = join(cache, 'last-bundle.json');
    const previous = existsSync(recordFile)
      ? (JSON.parse(readFileSync(recordFile, 'utf8')) as CacheRecord).bundle.sha256
      : null;
    const record: CacheRecord = { toolchain, inputs, bundle };
    writeAtomically(recordFile, Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
    // Only the last bundle is ever reused: an older one would just pile up.
    if (previous && previous !== bundle.sha256) rmSync(join(cache, `${previous}.mjs`), { force: true });
  }
  return { file: outFile, ...bundle };
}

async function runEsbuild(): Promise<{ contents: Buffer; metafile: Metafile }> {
  try {
    const result = await build({
      absWorkingDir: REPO_ROOT,
      entryPoints: [ENTRY],
      // Never written (write: false); it only names the output, inside the repository so that
      // nothing outside it shows up in the bundle.
      outfile: join(REPO_ROOT, 'agent.mjs'),
      write: false,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'esm',
      banner: { js: REQUIRE_BANNER },
      external: NATIVE_MODULES,
      sourcemap: false,
      minify: false,
      metafile: true,
      logLevel: 'silent',
      plugins: [versionOnlyPackageJson, fastcdcInBundle],
    });
    const [output] = result.outputFiles;
    if (!output)
      throw new BoardfleetError('agent-bundle-failed', 'esbuild wrote no output for the agent bundle');
    return { contents: Buffer.from(output.contents), metafile: result.metafile };
  } catch (error) {
    if (isBuildFailure(error)) {
      const messages = error.errors.map(
        (message) =>
          `${message.location ? `${message.location.file}:${message.location.line}: ` : ''}${message.text}`,
      );
      throw new BoardfleetError(
        'agent-bundle-failed',
        `bundling the agent failed:\n  ${messages.join('\n  ')}`,
        {
          cause: error,
        },
      );
    }
    throw error;
  }
}

/** The agent imports the root package.json for its version only: the bundle carries nothing else of it. */
const versionOnlyPackageJson: Plugin = {
  name: 'version-only-package-json',
  setup(builder) {
    builder.onLoad({ filter: /[\\/]package\.json$/ }, (args) => {
      if (args.path !== ROOT_PACKAGE_JSON) return undefined;
      const { version } = JSON.parse(readFileSync(args.path, 'utf8')) as { version: string };
      return { contents: JSON.stringify({ version }), loader: 'json' };
    });
  },
};

/** How the package loads its WebAssembly: from a file beside itself, which an image does not have. */
const FASTCDC_WASM_LOADER =
  /const path = require\('path'\)\.join\(__dirname, 'chunking_bg\.wasm'\);\s*const bytes = require\('fs'\)\.readFileSync\(path\);/;

/**
 * FastCDC (delta updates) in the one-file bundle: the package's loader gets the WebAssembly's
 * bytes inlined (20 KB) instead of reading them from its folder, which an image does not have.
 */
export const fastcdcInBundle: Plugin = {
  name: 'fastcdc-in-bundle',
  setup(builder) {
    builder.onLoad({ filter: /[\\/]wasm-chunking-fastcdc-node[\\/]chunking\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!FASTCDC_WASM_LOADER.test(source))
        throw new Error(
          `${args.path} no longer loads chunking_bg.wasm as this bundler expects: update fastcdcInBundle`,
        );
      const wasm = readFileSync(join(dirname(args.path), 'chunking_bg.wasm')).toString('base64');
      return {
        contents: source.replace(
          FASTCDC_WASM_LOADER,
          () => `const bytes = Buffer.from('${wasm}', 'base64');`,
        ),
        loader: 'js',
      };
    });
  },
};

/**
 * The import chain by which the bundle would load a native module at start-up, or null. Static
 * imports and `require` calls run when their importer does; a dynamic `import()` runs only when
 * reached, so the search does not follow it.
 */
function eagerNativeImport(metafile: Metafile): string[] | null {
  const cameFrom = new Map<string, string | null>([[ENTRY, null]]);
  const queue = [ENTRY];
  const chainTo = (file: string) => {
    const chain: string[] = [];
    for (let at: string | null = file; at !== null; at = cameFrom.get(at) ?? null) chain.unshift(at);
    return chain;
  };
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const imported of metafile.inputs[file]?.imports ?? []) {
      if (imported.kind !== 'import-statement' && imported.kind !== 'require-call') continue;
      if (imported.external) {
        if (NATIVE_MODULES.some((name) => imported.path === name || imported.path.startsWith(`${name}/`))) {
          return [...chainTo(file), imported.path];
        }
      } else if (!cameFrom.has(imported.path)) {
        cameFrom.set(imported.path, file);
        queue.push(imported.path);
      }
    }
  }
  return null;
}

function bundledPackages(metafile: Metafile): Array<{ name: string; version: string }> {
  const found = new Map<string, { name: string; version: string }>();
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (!match?.[1]) continue;
    const { name, version } = JSON.parse(readFileSync(join(REPO_ROOT, match[1], 'package.json'), 'utf8')) as {
      name: string;
      version: string;
    };
    found.set(`${name}@${version}`, { name, version });
  }
  return [...found.values()].sort(
    (a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version),
  );
}

function reusableBundle(
  cache: string,
  toolchain: string,
): { contents: Buffer; bundle: CacheRecord['bundle'] } | null {
  const recordFile = join(cache, 'last-bundle.json');
  if (!existsSync(recordFile)) return null;
  const record = JSON.parse(readFileSync(recordFile, 'utf8')) as CacheRecord;
  if (record.toolchain !== toolchain) return null;
  for (const [input, hash] of Object.entries(record.inputs)) {
    const path = join(REPO_ROOT, input);
    if (!existsSync(path) || sha256(readFileSync(path)) !== hash) return null;
  }
  const bundleFile = join(cache, `${record.bundle.sha256}.mjs`);
  if (!existsSync(bundleFile)) return null;
  const contents = readFileSync(bundleFile);
  return sha256(contents) === record.bundle.sha256 ? { contents, bundle: record.bundle } : null;
}

function writeAtomically(file: string, contents: Buffer): void {
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, contents, { mode: 0o644 });
  renameSync(temporary, file);
}

const isBuildFailure = (error: unknown): error is BuildFailure =>
  error instanceof Error && Array.isArray((error as Partial<BuildFailure>).errors);
