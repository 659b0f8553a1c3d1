import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as tar from 'tar';
import { BoardfleetError } from '../../protocol/errors.ts';
import { BUNDLE_FILES, type LaunchSpec } from '../../protocol/unikernel-image.ts';
import { readLaunchSpec } from './qemu-vm.ts';

const REQUIRED_FILES = [BUNDLE_FILES.launchSpec, BUNDLE_FILES.kernel, BUNDLE_FILES.initramfs];

/**
 * Checks a bundle folder: launch.json valid, kernel and initramfs present. Throws `bad-bundle`
 * saying what is wrong.
 */
export function checkBundleDir(dir: string, label: string): LaunchSpec {
  const missing = REQUIRED_FILES.filter((file) => !existsSync(join(dir, file)));
  if (missing.length > 0) {
    throw new BoardfleetError(
      'bad-bundle',
      `${label} is not a unikernel bundle: it has no ${missing.join(', ')}`,
    );
  }
  return readLaunchSpec(dir);
}

/**
 * Extracts a bundle tar into `destination` (made whole by a rename, so a crash leaves no half
 * bundle) and checks it. An existing checked folder is kept: extraction is idempotent.
 */
export async function extractBundle(
  tarFile: string,
  destination: string,
  label: string,
): Promise<LaunchSpec> {
  if (existsSync(join(destination, BUNDLE_FILES.launchSpec))) return checkBundleDir(destination, label);
  const staging = `${destination}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    await tar.x({ file: tarFile, cwd: staging, strict: true });
    const spec = checkBundleDir(staging, label);
    rmSync(destination, { recursive: true, force: true });
    renameSync(staging, destination);
    return spec;
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if (error instanceof BoardfleetError) throw error;
    throw new BoardfleetError(
      'bad-bundle',
      `${label} is not a valid bundle tar: ${(error as Error).message}`,
    );
  }
}
