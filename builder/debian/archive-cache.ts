import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256File } from '../../lib/hash.ts';
import { downloadVerified, type DownloadTarget } from './archive-download.ts';

/** For a progress bar: bytes as they arrive, and files found in the cache (no network). */
export type ArchiveProgressEvent =
  | { type: 'download'; what: string; url: string; receivedBytes: number; totalBytes: number }
  | { type: 'cached'; what: string; path: string; bytes: number }
  /** A cached file failed its check and was deleted; a download follows. */
  | { type: 'cache-corrupt'; what: string; path: string };

/**
 * The archive client's folder on disk, every file in it named by its sha256. Nothing in it is
 * trusted: a cached file is hashed again on every use, and a download appears only once checked.
 */
export class ArchiveCache {
  constructor(
    readonly root: string,
    readonly onProgress: (event: ArchiveProgressEvent) => void,
  ) {}

  /** `<root>/<name>`, created if needed. */
  async folder(name: string): Promise<string> {
    const path = join(this.root, name);
    await mkdir(path, { recursive: true });
    return path;
  }

  /** True when `path` exists with the expected size and sha256; a mismatching file is deleted. */
  async holds(path: string, expected: { sha256: string; size: number }, what: string): Promise<boolean> {
    const info = await stat(path).catch(() => undefined);
    if (!info) return false;
    if (info.size === expected.size && (await sha256File(path)) === expected.sha256) {
      this.onProgress({ type: 'cached', what, path, bytes: info.size });
      return true;
    }
    await rm(path, { force: true });
    this.onProgress({ type: 'cache-corrupt', what, path });
    return false;
  }

  /** Downloads `target` to `path`, checked by size and sha256, reporting the bytes as they come. */
  async download(target: DownloadTarget, path: string, signal?: AbortSignal): Promise<void> {
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
}

/** A small JSON record of the cache (a pointer, a file list), or undefined when missing or unreadable. */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Writes under a temporary name and renames, so a reader never sees half a record. */
export async function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, JSON.stringify(value));
  await rename(temporary, path);
}
