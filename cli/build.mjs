// `npm run build:cli`: compiles the CLI, and the server, agent and builder it starts, into dist/cli
// with esbuild, so a command starts without compiling TypeScript first. `npm ci` (prepare) and
// `npm test` run it; cli/boardfleet.js falls back to the sources through tsx when it is missing or stale.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { BUILD_DIR, MANIFEST } from './compiled-cli.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT_DIR = join(ROOT, BUILD_DIR);

/**
 * Each module's `import.meta.url` stays the URL of its own source file, so paths resolved beside
 * it (firmware recipes, board files, migrations' neighbours, the dashboard in server/web/dist,
 * package.json) are found exactly as under tsx. The URL is relative to the output, so the
 * checkout can move. Every output file sits in dist/cli/, two levels below the root.
 */
const ROOT_FROM_OUTPUT = "const __boardfleetRoot = new URL('../../', import.meta.url);";
const SOURCE_URL = '__boardfleetSourceUrl';

/**
 * npm packages load from node_modules as they are (native addons, NestJS's optional requires),
 * except these pure ES modules: zod is over a hundred files that cost every API command ~50 ms
 * to load one by one, and ~10 ms in one piece.
 */
const BUNDLED_PACKAGES = ['zod'];

/** @type {import('esbuild').Plugin} */
const packagesExternal = {
  name: 'packages-external',
  setup(builder) {
    builder.onResolve({ filter: /^[^./]/ }, ({ path }) => {
      const name = path.startsWith('@') ? path.split('/', 2).join('/') : path.split('/')[0];
      return BUNDLED_PACKAGES.includes(name) ? undefined : { external: true };
    });
  },
};

/** @type {import('esbuild').Plugin} */
const sourceUrls = {
  name: 'source-import-meta-url',
  setup(builder) {
    builder.onLoad({ filter: /\.ts$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8');
      if (!source.includes('import.meta')) return undefined;
      const fromRoot = relative(ROOT, args.path).split('\\').join('/');
      return {
        loader: 'ts',
        // On the first line, so the source map's line numbers still match the file's.
        contents: `const ${SOURCE_URL} = new URL(${JSON.stringify(fromRoot)}, __boardfleetRoot).href; ${source}`,
      };
    });
  },
};

const startedAt = Date.now();
const staging = `${OUT_DIR}.tmp-${process.pid}`;
try {
  const inputs = await compile(staging);
  const { describeCommands } = await import(pathToFileURL(join(staging, 'main.js')).href);
  const { commands } = await describeCommands();
  writeFileSync(join(staging, MANIFEST), `${JSON.stringify({ startedAt, inputs, commands })}\n`);
  // Swapped in whole: a CLI started meanwhile runs the old build, the new one, or (while neither
  // is there) the sources, never half of each.
  mkdirSync(dirname(OUT_DIR), { recursive: true });
  rmSync(OUT_DIR, { recursive: true, force: true });
  renameSync(staging, OUT_DIR);
  process.stdout.write(
    `CLI built into ${relative(process.cwd(), OUT_DIR) || '.'} from ${inputs.length} sources in ${Date.now() - startedAt} ms\n`,
  );
} finally {
  rmSync(staging, { recursive: true, force: true });
}

/** Bundles into `outdir`; returns what the build read (the sources and this script), to tell when it is stale. */
async function compile(outdir) {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ['cli/main.ts'],
    outdir,
    // One file per lazily loaded command, all beside main.js (see ROOT_FROM_OUTPUT).
    splitting: true,
    chunkNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.19',
    tsconfig: 'tsconfig.json',
    // tsx keeps names too: NestJS and error messages print class names.
    keepNames: true,
    define: { 'import.meta.url': SOURCE_URL },
    banner: { js: ROOT_FROM_OUTPUT },
    plugins: [packagesExternal, sourceUrls],
    // Stack traces name the TypeScript sources (cli/boardfleet.js turns source maps on).
    sourcemap: 'linked',
    sourcesContent: false,
    metafile: true,
    logLevel: 'warning',
  });
  return [
    ...Object.keys(result.metafile.inputs).filter((input) => !input.includes('node_modules/')),
    relative(ROOT, fileURLToPath(import.meta.url)),
  ];
}
