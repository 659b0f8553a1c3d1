// The compiled CLI in dist/cli (written by cli/build.mjs) and whether it is current; read by
// cli/boardfleet.js on every start, so it stays small and plain JavaScript.
import { readFileSync, statSync } from 'node:fs';

/** The build's output folder, relative to the repository. */
export const BUILD_DIR = 'dist/cli';
/** In BUILD_DIR: when the build started, the sources it read and the command index. */
export const MANIFEST = 'build.json';

/**
 * The command index of the build in `root` (a file: URL ending in /), or null when there is no
 * build or a source it read has changed since it started.
 */
export function freshBuild(root) {
  let manifest;
  try {
    manifest = JSON.parse(readFileSync(new URL(`${BUILD_DIR}/${MANIFEST}`, root), 'utf8'));
  } catch {
    return null;
  }
  for (const input of manifest.inputs) {
    const changed = statSync(new URL(input, root), { throwIfNoEntry: false })?.mtimeMs;
    if (changed === undefined || changed >= manifest.startedAt) return null;
  }
  return { commands: manifest.commands };
}
