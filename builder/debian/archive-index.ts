import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256 } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type ArchiveCache, readJson, writeJsonAtomically } from './archive-cache.ts';
import { downloadBytes } from './archive-download.ts';
import { type ControlStanza, PackagesParser, parseRelease, type ReleaseFile } from './debian-control.ts';
import type { DebianTools, VerifiedText } from './debian-tools.repository.ts';
import { type ArchivePackage, PackageIndex } from './package-resolver.ts';

/** What {@link loadArchiveIndex} loaded. */
export interface ArchiveIndexInfo {
  /** sha256 of the InRelease file: pins every index and package of this load. */
  indexId: string;
  /** The Date field of the Release. */
  date: Date | undefined;
  /** True when the mirror was not asked at all. */
  offline: boolean;
  /** Fingerprints of the keys whose good signatures gpgv checked, for the build log. */
  signedBy: string[];
  packages: number;
}

export interface LoadIndexOptions {
  /** Load exactly this InRelease (from the cache, no network) instead of the mirror's current one. */
  indexId?: string;
  signal?: AbortSignal;
}

/** One suite of one mirror, for one architecture, and how to check and keep what it serves. */
export interface IndexSource {
  mirror: string;
  suite: string;
  components: string[];
  architecture: string;
  keyring: string;
  /** Reuse the last InRelease fetched when it is younger than this; 0: always ask. */
  maxIndexAgeSeconds: number;
  tools: DebianTools;
  cache: ArchiveCache;
  /** "bookworm (main) for arm64 at http://…", for messages. */
  description: string;
}

export interface LoadedIndex {
  indexId: string;
  release: ReleaseFile;
  index: PackageIndex;
  info: ArchiveIndexInfo;
}

interface VerifiedInRelease {
  sha256: string;
  text: string;
  url: string;
  fromCache: boolean;
  offline: boolean;
  signedBy: string[];
}

interface LatestPointer {
  sha256: string;
  fetchedAt: number;
  url: string;
}

/** Debian's InRelease is ~150 kB; anything far bigger is not one. */
const IN_RELEASE_LIMIT = 16 * 1024 * 1024;

const PACKAGE_FIELDS: ReadonlySet<string> = new Set([
  'Package',
  'Version',
  'Architecture',
  'Depends',
  'Pre-Depends',
  'Provides',
  'Filename',
  'Size',
  'SHA256',
  'Source',
  'Description',
]);

const inReleaseUrl = (source: IndexSource) => `${source.mirror}/dists/${source.suite}/InRelease`;

/**
 * Fetches and verifies InRelease, then the Packages index of each component (by the sha256
 * InRelease lists), and parses them. See {@link LoadIndexOptions} to pin a snapshot.
 */
export async function loadArchiveIndex(source: IndexSource, options: LoadIndexOptions): Promise<LoadedIndex> {
  const inRelease = await obtainInRelease(source, options);
  const release = parseRelease(inRelease.text, inRelease.url);
  if (release.suite !== source.suite && release.codename !== source.suite) {
    throw new BoardfleetError(
      'archive-signature',
      `${inRelease.url} is signed but describes suite ${release.suite} (${release.codename}), not ${source.suite}: refusing it`,
    );
  }
  if (!inRelease.fromCache && release.validUntil && release.validUntil.getTime() < Date.now()) {
    throw new BoardfleetError(
      'archive-expired',
      `${inRelease.url} expired on ${release.validUntil.toISOString()}: the mirror is stale or replaying an old file`,
    );
  }
  const index = new PackageIndex(source.architecture);
  for (const component of source.components) {
    const path = await obtainPackagesFile(source, release, component, options.signal);
    await parsePackages(source.tools, path, component, index);
  }
  return {
    indexId: inRelease.sha256,
    release,
    index,
    info: {
      indexId: inRelease.sha256,
      date: release.date,
      offline: inRelease.offline,
      signedBy: inRelease.signedBy,
      packages: index.size,
    },
  };
}

/** The verified InRelease: pinned, recent enough in the cache, or fresh from the mirror. */
async function obtainInRelease(source: IndexSource, options: LoadIndexOptions): Promise<VerifiedInRelease> {
  const releases = await source.cache.folder('releases');
  if (options.indexId) return pinnedInRelease(source, releases, options.indexId);
  const pointerPath = join(
    releases,
    `latest-${sha256(`${source.mirror} ${source.suite}`).slice(0, 16)}.json`,
  );
  return (
    (await recentInRelease(source, releases, pointerPath)) ??
    (await downloadInRelease(source, releases, pointerPath, options.signal))
  );
}

async function pinnedInRelease(
  source: IndexSource,
  releases: string,
  indexId: string,
): Promise<VerifiedInRelease> {
  const path = join(releases, `${indexId}.InRelease`);
  const bytes = await readFile(path).catch(() => undefined);
  if (!bytes || sha256(bytes) !== indexId) {
    throw new BoardfleetError(
      'archive-index-missing',
      `the index ${indexId} pinned for ${source.description} is not in the cache ${releases}: load the current index instead`,
    );
  }
  return cachedInRelease(source, path, indexId);
}

/** The last InRelease fetched from this mirror and suite, if it is young enough to use unasked. */
async function recentInRelease(
  source: IndexSource,
  releases: string,
  pointerPath: string,
): Promise<VerifiedInRelease | undefined> {
  const pointer = await readJson<LatestPointer>(pointerPath);
  if (!pointer || source.maxIndexAgeSeconds <= 0) return undefined;
  if (Date.now() - pointer.fetchedAt >= source.maxIndexAgeSeconds * 1000) return undefined;
  const path = join(releases, `${pointer.sha256}.InRelease`);
  const bytes = await readFile(path).catch(() => undefined);
  if (!bytes || sha256(bytes) !== pointer.sha256) return undefined;
  const verified = await cachedInRelease(source, path, pointer.sha256);
  source.cache.onProgress({ type: 'cached', what: 'InRelease', path, bytes: bytes.length });
  return verified;
}

async function cachedInRelease(
  source: IndexSource,
  path: string,
  indexId: string,
): Promise<VerifiedInRelease> {
  const url = inReleaseUrl(source);
  const verified = await source.tools.verifyClearsigned(path, source.keyring, `${url} (cached ${path})`);
  return { sha256: indexId, ...verifiedParts(verified), url, fromCache: true, offline: true };
}

async function downloadInRelease(
  source: IndexSource,
  releases: string,
  pointerPath: string,
  signal: AbortSignal | undefined,
): Promise<VerifiedInRelease> {
  const url = inReleaseUrl(source);
  const bytes = await downloadBytes(url, IN_RELEASE_LIMIT, { signal });
  source.cache.onProgress({
    type: 'download',
    what: 'InRelease',
    url,
    receivedBytes: bytes.length,
    totalBytes: bytes.length,
  });
  const hash = sha256(bytes);
  const temporary = join(releases, `${hash}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(temporary, bytes);
    const verified = await source.tools.verifyClearsigned(temporary, source.keyring, url);
    await rename(temporary, join(releases, `${hash}.InRelease`));
    await writeJsonAtomically(pointerPath, {
      sha256: hash,
      fetchedAt: Date.now(),
      url,
    } satisfies LatestPointer);
    return { sha256: hash, ...verifiedParts(verified), url, fromCache: false, offline: false };
  } finally {
    await rm(temporary, { force: true });
  }
}

function verifiedParts(verified: VerifiedText): { text: string; signedBy: string[] } {
  return { text: verified.text, signedBy: verified.signatures.map((signature) => signature.fingerprint) };
}

/** `<cacheDir>/indexes/<sha256>.xz` for one component, fetched by hash when the mirror offers it. */
async function obtainPackagesFile(
  source: IndexSource,
  release: ReleaseFile,
  component: string,
  signal?: AbortSignal,
): Promise<string> {
  const relative = `${component}/binary-${source.architecture}/Packages.xz`;
  const entry = release.sha256.get(relative);
  if (!entry) {
    throw new BoardfleetError(
      'archive-index-missing',
      `${inReleaseUrl(source)} lists no ${relative}: is "${component}" a component of ${source.suite} and ${source.architecture} one of its architectures (${release.architectures.join(', ')})?`,
    );
  }
  const path = join(await source.cache.folder('indexes'), `${entry.sha256}.xz`);
  const what = `${source.suite}/${relative}`;
  if (await source.cache.holds(path, entry, what)) return path;
  const base = `${source.mirror}/dists/${source.suite}`;
  // By-hash URLs cannot change under us between reading InRelease and fetching the index.
  const url = release.acquireByHash
    ? `${base}/${component}/binary-${source.architecture}/by-hash/SHA256/${entry.sha256}`
    : `${base}/${relative}`;
  const target = { url, what, sha256: entry.sha256, size: entry.size, expectedFrom: inReleaseUrl(source) };
  try {
    await source.cache.download(target, path, signal);
  } catch (error) {
    const notFound = error instanceof BoardfleetError && /HTTP 404/.test(error.message);
    if (!release.acquireByHash || !notFound) throw error;
    await source.cache.download({ ...target, url: `${base}/${relative}` }, path, signal);
  }
  return path;
}

async function parsePackages(
  tools: DebianTools,
  path: string,
  component: string,
  index: PackageIndex,
): Promise<void> {
  const parser = new PackagesParser(PACKAGE_FIELDS, (stanza) => {
    const pkg = toArchivePackage(stanza, component);
    if (pkg) index.add(pkg);
  });
  for await (const chunk of tools.decompressXz(path) as AsyncIterable<Buffer>) {
    parser.push(chunk.toString('latin1'));
  }
  parser.end();
}

function toArchivePackage(stanza: ControlStanza, component: string): ArchivePackage | undefined {
  const name = stanza.get('Package');
  const version = stanza.get('Version');
  const filename = stanza.get('Filename');
  const sha256 = stanza.get('SHA256');
  const size = stanza.get('Size');
  // An entry without these cannot be fetched or checked; the archive never writes one.
  if (!name || !version || !filename || !sha256 || !size) return undefined;
  const [, sourceName, sourceVersion] = /^(\S+)(?:\s+\((\S+)\))?$/.exec(stanza.get('Source') ?? '') ?? [];
  return {
    name,
    version,
    architecture: stanza.get('Architecture') ?? '',
    depends: stanza.get('Depends') ?? '',
    preDepends: stanza.get('Pre-Depends') ?? '',
    provides: stanza.get('Provides') ?? '',
    filename,
    size: Number(size),
    sha256,
    source: sourceName ?? name,
    sourceVersion: sourceVersion ?? version,
    description: stanza.get('Description') ?? '',
    component,
  };
}
