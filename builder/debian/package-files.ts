import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, rm, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { x as extractTar } from 'tar';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type ArchiveCache, readJson, writeJsonAtomically } from './archive-cache.ts';
import type { DebianTools } from './debian-tools.repository.ts';

/** The package fields fetching needs: where the .deb is, and what it must hash to. */
export interface FetchablePackage {
  name: string;
  version: string;
  /** Path of the .deb relative to the mirror (`pool/main/…`). */
  filename: string;
  size: number;
  sha256: string;
}

/**
 * The .deb files of one mirror in the cache: `<cache>/debs/<sha256>.deb`, downloaded and checked
 * first if needed, and their unpacked trees in `<cache>/unpacked/<sha256>/`.
 */
export class PackageFiles {
  constructor(
    private readonly mirror: string,
    private readonly cache: ArchiveCache,
    private readonly tools: DebianTools,
  ) {}

  /**
   * The .deb in the cache, downloaded and checked first if needed. A cached file that no longer
   * matches is deleted and fetched again; a download that does not match throws `archive-hash-mismatch`.
   */
  async fetch(pkg: FetchablePackage, options: { signal?: AbortSignal } = {}): Promise<string> {
    const path = join(await this.cache.folder('debs'), `${pkg.sha256}.deb`);
    const what = `${pkg.name} ${pkg.version}`;
    if (await this.cache.holds(path, pkg, what)) return path;
    const url = `${this.mirror}/${pkg.filename}`;
    await this.cache.download(
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
    const entries = await this.extractEntries(debPath, destinationDir);
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
   * The package fetched and extracted once into `<cache>/unpacked/<sha256>/`, reused on later
   * calls: a 60 MB kernel package takes seconds to unpack. The tree is shared, so treat it as
   * read-only; unlike the downloads it is not re-verified (delete it to force a fresh unpack).
   */
  async unpack(
    pkg: FetchablePackage,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ root: string; files: string[] }> {
    const root = join(await this.cache.folder('unpacked'), pkg.sha256);
    const listPath = `${root}.files.json`;
    const known = await readJson<string[]>(listPath);
    if (known && (await stat(root).catch(() => undefined))?.isDirectory()) {
      this.cache.onProgress({
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

  /** Streams the .deb's data tarball into the folder, refusing any entry path outside it. */
  private async extractEntries(
    debPath: string,
    destinationDir: string,
  ): Promise<Array<{ path: string; type: string; mode: number | undefined }>> {
    const entries: Array<{ path: string; type: string; mode: number | undefined }> = [];
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
    if (unsafe.length > 0) {
      throw new BoardfleetError(
        'archive-extract-failed',
        `${debPath} holds paths outside its root (${unsafe.slice(0, 3).join(', ')}): refused`,
      );
    }
    return entries;
  }
}
