#!/usr/bin/env node
// Runs the compiled CLI in dist/cli (`npm run build:cli`, which `npm ci` and `npm test` run). Where
// that build is missing or older than the sources (a checkout being edited), or with
// BOARDFLEET_CLI_SOURCES=1, it runs the TypeScript sources through tsx: slower to start, never stale.
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { BUILD_DIR, freshBuild } from './compiled-cli.js';

const root = new URL('../', import.meta.url);
const fromSources = process.env.BOARDFLEET_CLI_SOURCES === '1';
const build = fromSources ? null : freshBuild(root);

if (build) {
  // fetch parses HTTP with WebAssembly that V8 then optimises on a background thread, and Node
  // waits for that before it exits: ~150 ms more for every command that talks to the server. The
  // baseline code V8 compiles first downloads as fast (measured: 300 MiB either way). The sources
  // below run as they always did: the start-up benchmark's baseline.
  setFlagsFromString('--liftoff-only');
  // Stack traces then name the TypeScript sources, as under tsx.
  process.setSourceMapsEnabled(true);
  const { main } = await import(new URL(`${BUILD_DIR}/main.js`, root).href);
  await main(process.argv, build);
} else {
  if (!fromSources && process.stderr.isTTY)
    process.stderr.write(
      `boardfleet: ${BUILD_DIR} is missing or older than the sources, running them through tsx (slow to start); npm run build:cli compiles them\n`,
    );
  const { register } = await import('tsx/esm/api');
  // Our tsconfig (decorators), wherever the command is run from: tsx would look in the working directory.
  register({ tsconfig: fileURLToPath(new URL('tsconfig.json', root)) });
  const { main } = await import('./main.ts');
  await main(process.argv);
}
