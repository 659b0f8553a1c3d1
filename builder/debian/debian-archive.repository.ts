import { homedir } from 'node:os';
import { join } from 'node:path';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ReleaseFile } from './debian-control.ts';
import { ArchiveCache, type ArchiveProgressEvent } from './archive-cache.ts';
import {
  type ArchiveIndexInfo,
  type IndexSource,
  type LoadedIndex,
  type LoadIndexOptions,
  loadArchiveIndex,
} from './archive-index.ts';
import { DebianTools } from './debian-tools.repository.ts';
import { type FetchablePackage, PackageFiles } from './package-files.ts';
import { resolveDependencies, type ArchivePackage } from './package-resolver.ts';

export type { ArchivePackage } from './package-resolver.ts';
export type { ArchiveProgressEvent } from './archive-cache.ts';
export type { ArchiveIndexInfo, LoadIndexOptions } from './archive-index.ts';
export type { FetchablePackage } from './package-files.ts';

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

export interface ResolveRequestOptions {
  /** Packages never pulled in; a dependency naming one of them counts as met. */
  exclude?: string[];
}

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/**
 * A client for one suite of a Debian archive, trusting only what it can verify: InRelease by
 * its OpenPGP signature (gpgv and the keyring), each Packages index by the sha256 that
 * InRelease lists, each .deb by the sha256 its index lists. Everything is cached by sha256,
 * so a warm run downloads at most InRelease. Loading the index is `archive-index.ts`; the
 * .deb files are `package-files.ts`.
 */
export class DebianArchive {
  readonly mirror: string;
  readonly suite: string;
  readonly components: string[];
  readonly architecture: string;
  readonly cacheDir: string;
  readonly keyring: string;
  private readonly source: IndexSource;
  private readonly files: PackageFiles;
  private loaded: LoadedIndex | undefined;

  constructor(options: DebianArchiveOptions = {}) {
    this.mirror = (options.mirror ?? DEFAULT_MIRROR).replace(/\/+$/, '');
    this.suite = options.suite ?? 'bookworm';
    this.components = options.components ?? ['main', 'non-free-firmware'];
    this.architecture = options.architecture ?? 'arm64';
    this.cacheDir = options.cacheDir ?? join(homedir(), '.cache', 'boardfleet', 'debian');
    this.keyring = options.keyring ?? DEFAULT_KEYRING;
    const tools = options.tools ?? new DebianTools();
    const cache = new ArchiveCache(this.cacheDir, options.onProgress ?? (() => undefined));
    this.source = {
      mirror: this.mirror,
      suite: this.suite,
      components: this.components,
      architecture: this.architecture,
      keyring: this.keyring,
      maxIndexAgeSeconds: options.maxIndexAgeSeconds ?? 0,
      tools,
      cache,
      description: `${this.suite} (${this.components.join(', ')}) for ${this.architecture} at ${this.mirror}`,
    };
    this.files = new PackageFiles(this.mirror, cache, tools);
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
    this.loaded = await loadArchiveIndex(this.source, options);
    return this.loaded.info;
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
      archiveName: this.source.description,
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

  /** The .deb in the cache (`<cacheDir>/debs/<sha256>.deb`), downloaded and checked first if needed. */
  fetch(pkg: FetchablePackage, options: { signal?: AbortSignal } = {}): Promise<string> {
    return this.files.fetch(pkg, options);
  }

  /** {@link fetch} for many packages, a few at a time; paths in the order given. */
  fetchAll(
    packages: FetchablePackage[],
    options: { concurrency?: number; signal?: AbortSignal } = {},
  ): Promise<string[]> {
    return this.files.fetchAll(packages, options);
  }

  /** Unpacks a .deb's files into `destinationDir` as plain files; their relative paths, sorted. */
  extract(debPath: string, destinationDir: string): Promise<string[]> {
    return this.files.extract(debPath, destinationDir);
  }

  /** The package fetched and unpacked once into `<cacheDir>/unpacked/<sha256>/` (read-only, shared). */
  unpack(
    pkg: FetchablePackage,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ root: string; files: string[] }> {
    return this.files.unpack(pkg, options);
  }

  private requireLoaded(): LoadedIndex {
    if (!this.loaded)
      throw new BoardfleetError('archive-not-loaded', 'call loadIndex() before using the archive');
    return this.loaded;
  }
}
