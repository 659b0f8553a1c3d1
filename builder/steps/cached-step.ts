import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { partialPathFor } from './staged-output.ts';

/** The per-user cache, as XDG says: downloads and finished steps; the bench boards share it. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'boardfleet');
}

/**
 * One file a build step makes, kept in `stepsDir` under a name holding the hash of its inputs
 * and reused while they are unchanged (its name, less the hash, is added to `reused`). It is
 * written to a temporary name and renamed, so a cancelled or crashed build never leaves a
 * half-made step to reuse.
 */
export async function cachedStep(
  stepsDir: string,
  name: string,
  reused: string[],
  produce: (out: string) => Promise<void>,
): Promise<string> {
  const path = join(stepsDir, name);
  if (existsSync(path)) {
    reused.push(name.replace(/-[0-9a-f]{64}/, ''));
    return path;
  }
  const partial = partialPathFor(path);
  try {
    await produce(partial);
    await rename(partial, path);
  } finally {
    await rm(partial, { force: true });
  }
  return path;
}
