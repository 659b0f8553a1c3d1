import { join } from 'node:path';
import type { AnyBoard, LinuxBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { BuildReporter } from '../build-runner.ts';
import { epochFromEnvironment } from '../steps/input-hash.ts';
import type { SbomComponent } from '../steps/sbom.ts';
import {
  type ArchivePackage,
  type ArchiveProgressEvent,
  DebianArchive,
  type ResolvedPackage,
} from './debian-archive.repository.ts';

/**
 * What never goes into an image although packages name it: the package manager and its
 * configuration system (nothing is installed on the device), and what only maintainer scripts use.
 */
export const NEVER_INSTALLED = ['debconf', 'cdebconf', 'dpkg', 'perl-base', 'install-info', 'libc-bin'];
/** The kernel package's dependencies serve a conventional initramfs and dpkg hooks; ours is built here. */
const KERNEL_DEPENDENCIES_NOT_NEEDED = ['kmod', 'linux-base', 'initramfs-tools', 'linux-initramfs-tool'];

/**
 * Debian's archive for a build: the signed index loaded (refreshed at most every 6 hours) and the
 * build's SOURCE_DATE_EPOCH (given, from the environment, else the Release file's date), both logged.
 */
export async function openDebianArchive(
  base: { mirror: string; suite: string; components: string[] },
  architecture: string,
  input: { cacheDir: string; sourceDateEpoch?: number },
  reporter: BuildReporter,
): Promise<{ archive: DebianArchive; epoch: number }> {
  const archive = new DebianArchive({
    mirror: base.mirror,
    suite: base.suite,
    components: base.components,
    architecture,
    cacheDir: join(input.cacheDir, 'debian'),
    // A Release file is signed for a week; asking again within hours changes nothing but the inputs.
    maxIndexAgeSeconds: 6 * 3600,
    onProgress: downloadLogger(reporter),
  });
  const index = await archive.loadIndex({ signal: reporter.signal });
  reporter.log(`Debian ${base.suite} index ${index.indexId.slice(0, 12)} (${index.packages} packages)`);
  const epoch =
    input.sourceDateEpoch ?? epochFromEnvironment() ?? Math.floor((index.date?.getTime() ?? 0) / 1000);
  if (!(epoch > 0))
    throw new BoardfleetError('build-failed', 'no SOURCE_DATE_EPOCH and no Release date to use instead');
  reporter.log(`SOURCE_DATE_EPOCH=${epoch}`);
  return { archive, epoch };
}

/** Debian's kernel metapackage (`linux-image-arm64`) names the versioned kernel package it stands for. */
export function pickKernelPackage(
  archive: DebianArchive,
  board: Pick<LinuxBoard, 'id'> & { kernel: { package: string } },
): ResolvedPackage {
  const closure = archive.resolve([board.kernel.package], { exclude: KERNEL_DEPENDENCIES_NOT_NEEDED });
  const kernel = closure.find((pkg) => /^linux-image-\d/.test(pkg.name));
  if (!kernel) {
    throw new BoardfleetError(
      'build-failed',
      `${board.kernel.package} (board ${board.id}) does not lead to a versioned linux-image package: ${closure.map((pkg) => pkg.name).join(', ')}`,
    );
  }
  return kernel;
}

/** A package a board names (its firmware), which the archive must have. */
export function requirePackage(archive: DebianArchive, name: string, board: AnyBoard): ArchivePackage {
  const pkg = archive.find(name);
  if (!pkg) {
    throw new BoardfleetError(
      'archive-package-unknown',
      `board ${board.id} needs the Debian package ${name}, which ${archive.mirror} ${archive.suite} (${archive.components.join(', ')}) does not have`,
    );
  }
  return pkg;
}

/** Fetches packages one by one, moving the build's progress from `fromPercent` to `toPercent` by bytes. */
export async function fetchWithProgress(
  archive: DebianArchive,
  packages: Array<ResolvedPackage | ArchivePackage>,
  reporter: BuildReporter,
  fromPercent: number,
  toPercent: number,
): Promise<void> {
  const total = packages.reduce((sum, pkg) => sum + pkg.size, 0);
  let done = 0;
  for (const pkg of packages) {
    await archive.fetch(pkg, { signal: reporter.signal });
    done += pkg.size;
    reporter.progress(
      'fetching packages',
      fromPercent + ((toPercent - fromPercent) * done) / Math.max(total, 1),
    );
  }
}

/** Logs each download once (not every chunk) and each cached file that failed its check. */
function downloadLogger(reporter: BuildReporter): (event: ArchiveProgressEvent) => void {
  const started = new Set<string>();
  return (event) => {
    if (event.type === 'download' && !started.has(event.url)) {
      started.add(event.url);
      reporter.log(`downloading ${event.what} (${event.url})`);
    } else if (event.type === 'cache-corrupt') {
      reporter.log(`cached ${event.what} failed its check; downloading it again`);
    }
  };
}

/** A Debian package as the SBOM lists it, with its purl and where it was downloaded from. */
export function debianComponent(
  pkg: ResolvedPackage | ArchivePackage,
  mirror: string,
  architecture: string,
): SbomComponent {
  return {
    name: pkg.name,
    version: pkg.version,
    purl: `pkg:deb/debian/${pkg.name}@${encodeURIComponent(pkg.version)}?arch=${pkg.architecture === 'all' ? 'all' : architecture}`,
    downloadLocation: `${mirror}/${pkg.filename}`,
    sha256: pkg.sha256,
    ...(pkg.source && pkg.source !== pkg.name ? { source: pkg.source } : {}),
    supplier: 'Organization: Debian',
  };
}
