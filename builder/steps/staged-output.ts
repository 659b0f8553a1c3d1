import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A name of its own beside `path` for something being written there: unique per call, since two
 * builds (a second queue slot, another process sharing the steps dir) may make the same thing at once.
 */
export function partialPathFor(path: string): string {
  return `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Whether a build's output folder was finished (by {@link publishStagedOutput}). */
const isCompleteOutput = (outputDir: string): boolean => existsSync(join(outputDir, 'complete'));

/**
 * Makes a fully written staging folder the build's output folder, whole: marked `complete` and
 * renamed, so another build of the same inputs never sees it half made.
 */
async function publishStagedOutput(staging: string, outputDir: string): Promise<void> {
  await writeFile(join(staging, 'complete'), '');
  // A folder without `complete` was left half written (by a builder that wrote in place): replace it.
  if (!isCompleteOutput(outputDir)) await rm(outputDir, { recursive: true, force: true });
  await rename(staging, outputDir).catch((error: NodeJS.ErrnoException) => {
    // Another build of the same inputs finished first: its files are the same bytes.
    if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
  });
}

/**
 * A build's output folder, named by its inputs' hash: reused when complete, else written by
 * `produce` into a staging folder that is published whole. Returns whether it was reused.
 */
export async function stagedOutput(
  outputDir: string,
  produce: (staging: string) => Promise<void>,
): Promise<boolean> {
  if (isCompleteOutput(outputDir)) return true;
  const staging = partialPathFor(outputDir);
  await mkdir(staging, { recursive: true });
  try {
    await produce(staging);
    await publishStagedOutput(staging, outputDir);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return false;
}
