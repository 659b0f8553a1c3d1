import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { x as extractTar } from 'tar';
import { BoardfleetError } from '../../protocol/errors.ts';
import { downloadBytes, downloadVerified, type DownloadTarget } from './archive-download.ts';
import { PackagesParser, parseRelease, type ControlStanza, type ReleaseFile } from './debian-control.ts';
import { DebianTools, type VerifiedText } from './debian-tools.repository.ts';
import { PackageIndex, resolveDependencies, type ArchivePackage } from './package-resolver.ts';

export type { ArchivePackage } from './package-resolver.ts';

export interface DebianArchiveOptions {
  /** Default http://deb.debian.org/debian. */
  mirror?: string;
  /** Default bookworm. */
  suite?: string;
  /** Default main and non-free-firmware. */
  components?: string[];
  /** Default arm64. */
  architecture?: string;
  /** Where verified InRelease files, indexes and .debs are kept, by sha256. */
  cacheDir?: string;
  /** Default /usr/share/keyrings/debian-archive-keyring.gpg (package debian-archive-keyring). */
  keyring?: string;
  /**
   * Reuse the last InRelease fetched from this mirror and suite, without asking the mirror,
   * when it is younger than this. Default 0: always ask.
   */
  maxIndexAgeSeconds?: number;
  onProgress?: (event: ArchiveProgressEvent) => void;
  /** Tool runner; tests pass one with another PATH. */
  tools?: DebianTools;
}

/** For a progress bar: bytes as they arrive, and files found in the cache (no network). */
export type ArchiveProgressEvent =
  | { type: 'download'; what: string; url: string; receivedBytes: number; totalBytes: number }
  | { type: 'cached'; what: string; path: string; bytes: number }
  /** A cached file failed its check and was deleted; a download follows. */
  | { type: 'cache-corrupt'; what: string; path: string };

/** A package picked by {@link DebianArchive.resolve}. */
export interface ResolvedPackage {
  name: string;
  version: string;
  architecture: string;
  /** Path of the .deb relative to the mirror (`pool/main/…`). */
  filename: string;
  size: number;
  sha256: string;
  /** Source package name and version, for the SBOM. */
  source: string;
  sourceVersion: string;
  component: string;
  url: string;
  /** Names of the selected packages that depend on this one, sorted. */
  requiredBy: string[];
  /** Named in the request rather than pulled in. */
  requested: boolean;
}

/** What {@link DebianArchive.loadIndex} loaded. */
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

export interface ResolveRequestOptions {
  /** Packages never pulled in; a dependency naming one of them counts as met. */
  exclude?: string[];
}

/** The package fields {@link DebianArchive.fetch} needs (a ResolvedPackage has them). */
export type FetchablePackage = Pick<ResolvedPackage, 'name' | 'version' | 'filename' | 'size' | 'sha256'>;

interface LatestPointer {
  sha256: string;
  fetchedAt: number;
  url: string;
}

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
/** Debian's InRelease is ~150 kB; anything far bigger is not one. */
const IN_RELEASE_LIMIT = 16 * 1024 * 1024;

/**
 * A client for one suite of a Debian archive, trusting only what it can verify: InRelease by
 * its OpenPGP signature (gpgv and the keyring), each Packages index by the sha256 that
 * InRelease lists, each .deb by the sha256 its index lists. Everything is cached by sha256,
 * so a warm run downloads at most InRelease.
 */
export class DebianArchive {
  readonly mirror: string;
  readonly suite: string;
  readonly components: string[];
  readonly architecture: string;
  readonly cacheDir: string;
  readonly keyring: string;
  private readonly maxIndexAgeSeconds: number;
  private readonly onProgress: (event: ArchiveProgressEvent) => void;
  private readonly tools: DebianTools;
  private loaded: { indexId: string; release: ReleaseFile; index: PackageIndex } | undefined;

  constructor(options: DebianArchiveOptions = {}) {
    this.mirror = (options.mirror ?? DEFAULT_MIRROR).replace(/\/+$/, '');
    this.suite = options.suite ?? 'bookworm';
    this.components = options.components ?? ['main', 'non-free-firmware'];
    this.architecture = options.architecture ?? 'arm64';
    this.cacheDir = options.cacheDir ?? join(homedir(), '.cache', 'boardfleet', 'debian');
    this.keyring = options.keyring ?? DEFAULT_KEYRING;
    this.maxIndexAgeSeconds = options.maxIndexAgeSeconds ?? 0;
    this.onProgress = options.onProgress ?? (() => undefined);
    this.tools = options.tools ?? new DebianTools();
  }

  /** sha256 of the loaded InRelease: hash it into build inputs, or pass it back to loadIndex to pin. */
  get indexId(): string {
    return this.requireLoaded().indexId;
  }

  /** The loaded Release fields (date, suite, codename…). */
  get release(): ReleaseFile {
    return this.requireLoaded().release;
  }

  /**
   * Fetches and verifies InRelease, then the Packages index of each component (by the sha256
   * InRelease lists), and parses them. See {@link LoadIndexOptions} to pin a snapshot.
   */
  async loadIndex(options: LoadIndexOptions = {}): Promise<ArchiveIndexInfo> {
    const inRelease = await this.obtainInRelease(options);
    const release = parseRelease(inRelease.text, inRelease.url);
    if (release.suite !== this.suite && release.codename !== this.suite) {
      throw new BoardfleetError(
        'archive-signature',
        `${inRelease.url} is signed but describes suite ${release.suite} (${release.codename}), not ${this.suite}: refusing it`,
      );
    }
    if (!inRelease.fromCache && release.validUntil && release.validUntil.getTime() < Date.now()) {
      throw new BoardfleetError(
        'archive-expired',
        `${inRelease.url} expired on ${release.validUntil.toISOString()}: the mirror is stale or replaying an old file`,
      );
    }
    const index = new PackageIndex(this.architecture);
    for (const component of this.components) {
      const path = await this.obtainPackagesFile(release, component, options.signal);
      await this.parsePackages(path, component, index);
    }
    this.loaded = { indexId: inRelease.sha256, release, index };
    return {
      indexId: inRelease.sha256,
      date: release.date,
      offline: inRelease.offline,
      signedBy: inRelease.signedBy,
      packages: index.size,
    };
  }

  /** The newest version of a package in the loaded index, or undefined. */
  find(name: string): ArchivePackage | undefined {
    return this.requireLoaded().index.versionsOf(name)[0];
  }

  /**
   * The dependency closure of `names` (Depends and Pre-Depends), sorted by name. Throws
   * `archive-package-unknown` or `archive-unsatisfiable` naming the package and who wanted it.
   */
  resolve(names: string[], options: ResolveRequestOptions = {}): ResolvedPackage[] {
    const { index } = this.requireLoaded();
    const resolutions = resolveDependencies(index, names, {
      exclude: options.exclude,
      archiveName: this.describe(),
    });
    return resolutions.map(({ package: pkg, requiredBy, requested }) => ({
      name: pkg.name,
      version: pkg.version,
      architecture: pkg.architecture,
      filename: pkg.filename,
      size: pkg.size,
      sha256: pkg.sha256,
      source: pkg.source,
      sourceVersion: pkg.sourceVersion,
      component: pkg.component,
      url: `${this.mirror}/${pkg.filename}`,
      requiredBy,
      requested,
    }));
  }

  /**
   * The .deb in the cache (`<cacheDir>/debs/<sha256>.deb`), downloaded and checked first if
   * needed. A cached file that no longer matches is deleted and fetched again; a download that
   * does not match throws `archive-hash-mismatch`.
   */
  async fetch(pkg: FetchablePackage, options: { signal?: AbortSignal } = {}): Promise<string> {
    const directory = join(this.cacheDir, 'debs');
    await mkdir(directory, { recursive: true });
    const path = join(directory, `${pkg.sha256}.deb`);
    const what = `${pkg.name} ${pkg.version}`;
    if (await this.cachedFileMatches(path, pkg, what)) return path;
    const url = `${this.mirror}/${pkg.filename}`;
    await this.download(
      { url, what, sha256: pkg.sha256, size: pkg.size, expectedFrom: 'the Packages index' },
      path,
      options.signal,
    );
    return path;
  }

  /** {@link fetch} for many packages, a few at a time; paths in the order given. */
  async fetchAll(
    packages: FetchablePackage[],
    options: { concurrency?: number; signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const paths: string[] = new Array<string>(packages.length);
    let next = 0;
    const worker = async () => {
      while (next < packages.length) {
        const position = next++;
        paths[position] = await this.fetch(packages[position] as FetchablePackage, options);
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 4, packages.length) }, worker));
    return paths;
  }

  /**
   * Unpacks the data tarball of a .deb into `destinationDir` as plain files: no root, no
   * maintainer scripts, owners ignored, modes as in the package, symlinks kept. Returns the
   * relative paths of everything but directories, sorted.
   */
  async extract(debPath: string, destinationDir: string): Promise<string[]> {
    await mkdir(destinationDir, { recursive: true });
    const entries: { path: string; type: string; mode: number | undefined }[] = [];
    const unsafe: string[] = [];
    try {
      await pipeline(
        this.tools.fsysTarfile(debPath),
        extractTar({
          cwd: destinationDir,
          preserveOwner: false,
          strict: true,
          // Symlinks keep absolute targets as dpkg writes them (/lib64/ld-linux-x86-64.so.2 →
          // /lib/x86_64-linux-gnu/…); entry paths themselves must stay inside the folder.
          preservePaths: true,
          filter: (path) => {
            const inside = !isAbsolute(path) && !path.split('/').includes('..');
            if (!inside) unsafe.push(path);
            return inside;
          },
          onReadEntry: (entry) => {
            const path = entry.path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
            if (path !== '') entries.push({ path, type: entry.type, mode: entry.mode });
          },
        }),
      );
      if (unsafe.length > 0) {
        throw new BoardfleetError(
          'archive-extract-failed',
          `${debPath} holds paths outside its root (${unsafe.slice(0, 3).join(', ')}): refused`,
        );
      }
    } catch (error) {
      if (error instanceof BoardfleetError) throw error;
      throw new BoardfleetError(
        'archive-extract-failed',
        `cannot unpack ${debPath}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    // Created files get the process umask; set the package's modes exactly, directories last
    // so a read-only directory does not block the files inside it.
    const ordered = [...entries].sort(
      (a, b) => Number(a.type === 'Directory') - Number(b.type === 'Directory'),
    );
    for (const entry of ordered) {
      if (entry.type === 'SymbolicLink' || entry.mode === undefined) continue;
      await chmod(join(destinationDir, entry.path), entry.mode & 0o7777);
    }
    return entries
      .filter((entry) => entry.type !== 'Directory')
      .map((entry) => entry.path)
      .sort();
  }

  /**
   * The package fetched and extracted once into `<cacheDir>/unpacked/<sha256>/`, reused on later
   * calls: a 60 MB kernel package takes seconds to unpack. The tree is shared, so treat it as
   * read-only; unlike the downloads it is not re-verified (delete it to force a fresh unpack).
   */
  async unpack(
    pkg: FetchablePackage,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ root: string; files: string[] }> {
    const directory = join(this.cacheDir, 'unpacked');
    await mkdir(directory, { recursive: true });
    const root = join(directory, pkg.sha256);
    const listPath = `${root}.files.json`;
    const known = await readJson<string[]>(listPath);
    if (known && (await stat(root).catch(() => undefined))?.isDirectory()) {
      this.onProgress({
        type: 'cached',
        what: `${pkg.name} ${pkg.version} (unpacked)`,
        path: root,
        bytes: pkg.size,
      });
      return { root, files: known };
    }
    const deb = await this.fetch(pkg, options);
    const temporary = `${root}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      const files = await this.extract(deb, temporary);
      // A tree only ever appears whole (by rename); if another run got there first, keep theirs.
      await rename(temporary, root).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      await writeJsonAtomically(listPath, files);
      return { root, files };
    } finally {
      await rm(temporary, { recursive: true, force: true });
    }
  }

  private describe(): string {
    return `${this.suite} (${this.components.join(', ')}) for ${this.architecture} at ${this.mirror}`;
  }

  private requireLoaded() {
    if (!this.loaded)
      throw new BoardfleetError('archive-not-loaded', 'call loadIndex() before using the archive');
    return this.loaded;
  }

  private get inReleaseUrl(): string {
    return `${this.mirror}/dists/${this.suite}/InRelease`;
  }

  /** The verified InRelease: pinned, recent enough in the cache, or fresh from the mirror. */
  private async obtainInRelease(options: LoadIndexOptions): Promise<{
    sha256: string;
    text: string;
    url: string;
    fromCache: boolean;
    offline: boolean;
    signedBy: string[];
  }> {
    const releases = join(this.cacheDir, 'releases');
    await mkdir(releases, { recursive: true });
    const url = this.inReleaseUrl;
    const pointerPath = join(
      releases,
      `latest-${sha256Of(`${this.mirror} ${this.suite}`).slice(0, 16)}.json`,
    );

    if (options.indexId) {
      const path = join(releases, `${options.indexId}.InRelease`);
      const bytes = await readFile(path).catch(() => undefined);
      if (!bytes || sha256Of(bytes) !== options.indexId) {
        throw new BoardfleetError(
          'archive-index-missing',
          `the index ${options.indexId} pinned for ${this.describe()} is not in the cache ${releases}: load the current index instead`,
        );
      }
      const verified = await this.tools.verifyClearsigned(path, this.keyring, `${url} (cached ${path})`);
      return {
        sha256: options.indexId,
        ...this.verifiedParts(verified),
        url,
        fromCache: true,
        offline: true,
      };
    }

    const pointer = await readJson<LatestPointer>(pointerPath);
    if (
      pointer &&
      this.maxIndexAgeSeconds > 0 &&
      Date.now() - pointer.fetchedAt < this.maxIndexAgeSeconds * 1000
    ) {
      const path = join(releases, `${pointer.sha256}.InRelease`);
      const bytes = await readFile(path).catch(() => undefined);
      if (bytes && sha256Of(bytes) === pointer.sha256) {
        const verified = await this.tools.verifyClearsigned(path, this.keyring, `${url} (cached ${path})`);
        this.onProgress({ type: 'cached', what: 'InRelease', path, bytes: bytes.length });
        return {
          sha256: pointer.sha256,
          ...this.verifiedParts(verified),
          url,
          fromCache: true,
          offline: true,
        };
      }
    }

    const bytes = await downloadBytes(url, IN_RELEASE_LIMIT, { signal: options.signal });
    this.onProgress({
      type: 'download',
      what: 'InRelease',
      url,
      receivedBytes: bytes.length,
      totalBytes: bytes.length,
    });
    const sha256 = sha256Of(bytes);
    const temporary = join(releases, `${sha256}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      await writeFile(temporary, bytes);
      const verified = await this.tools.verifyClearsigned(temporary, this.keyring, url);
      await rename(temporary, join(releases, `${sha256}.InRelease`));
      await writeJsonAtomically(pointerPath, { sha256, fetchedAt: Date.now(), url } satisfies LatestPointer);
      return { sha256, ...this.verifiedParts(verified), url, fromCache: false, offline: false };
    } finally {
      await rm(temporary, { force: true });
    }
  }

  private verifiedParts(verified: VerifiedText): { text: string; signedBy: string[] } {
    return { text: verified.text, signedBy: verified.signatures.map((signature) => signature.fingerprint) };
  }

  /** `<cacheDir>/indexes/<sha256>.xz` for one component, fetched by hash when the mirror offers it. */
  private async obtainPackagesFile(
    release: ReleaseFile,
    component: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const relative = `${component}/binary-${this.architecture}/Packages.xz`;
    const entry = release.sha256.get(relative);
    if (!entry) {
      throw new BoardfleetError(
        'archive-index-missing',
        `${this.inReleaseUrl} lists no ${relative}: is "${component}" a component of ${this.suite} and ${this.architecture} one of its architectures (${release.architectures.join(', ')})?`,
      );
    }
    const directory = join(this.cacheDir, 'indexes');
    await mkdir(directory, { recursive: true });
    const path = join(directory, `${entry.sha256}.xz`);
    const what = `${this.suite}/${relative}`;
    if (await this.cachedFileMatches(path, entry, what)) return path;
    const base = `${this.mirror}/dists/${this.suite}`;
    // By-hash URLs cannot change under us between reading InRelease and fetching the index.
    const url = release.acquireByHash
      ? `${base}/${component}/binary-${this.architecture}/by-hash/SHA256/${entry.sha256}`
      : `${base}/${relative}`;
    const target = {
      url,
      what,
      sha256: entry.sha256,
      size: entry.size,
      expectedFrom: `${this.inReleaseUrl}`,
    };
    try {
      await this.download(target, path, signal);
    } catch (error) {
      const notFound = error instanceof BoardfleetError && /HTTP 404/.test(error.message);
      if (!release.acquireByHash || !notFound) throw error;
      await this.download({ ...target, url: `${base}/${relative}` }, path, signal);
    }
    return path;
  }

  private async parsePackages(path: string, component: string, index: PackageIndex): Promise<void> {
    const parser = new PackagesParser(PACKAGE_FIELDS, (stanza) => {
      const pkg = toArchivePackage(stanza, component);
      if (pkg) index.add(pkg);
    });
    for await (const chunk of this.tools.decompressXz(path) as AsyncIterable<Buffer>) {
      parser.push(chunk.toString('latin1'));
    }
    parser.end();
  }

  private async download(target: DownloadTarget, path: string, signal?: AbortSignal): Promise<void> {
    await downloadVerified(target, path, {
      signal,
      onProgress: (receivedBytes) =>
        this.onProgress({
          type: 'download',
          what: target.what,
          url: target.url,
          receivedBytes,
          totalBytes: target.size,
        }),
    });
  }

  /** True when `path` exists with the expected size and sha256; a mismatching file is deleted. */
  private async cachedFileMatches(
    path: string,
    expected: { sha256: string; size: number },
    what: string,
  ): Promise<boolean> {
    const info = await stat(path).catch(() => undefined);
    if (!info) return false;
    if (info.size === expected.size && (await sha256OfFile(path)) === expected.sha256) {
      this.onProgress({ type: 'cached', what, path, bytes: info.size });
      return true;
    }
    await rm(path, { force: true });
    this.onProgress({ type: 'cache-corrupt', what, path });
    return false;
  }
}

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

function sha256Of(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

async function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, JSON.stringify(value));
  await rename(temporary, path);
}
