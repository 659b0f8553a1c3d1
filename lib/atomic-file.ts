import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

/**
 * Write to a temporary file, fsync, rename: a crash leaves the old file or the new one. With
 * `syncDirectory`, the directory is fsynced too, so the rename itself survives a power cut
 * (what the boot FAT's config files need; the agent's own frequent state writes skip it).
 */
export function writeFileAtomically(
  path: string,
  content: string,
  options: { mode?: number; syncDirectory?: boolean } = {},
): void {
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w', options.mode ?? 0o644);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  if (options.syncDirectory) fsyncDirectory(dirname(path));
}

/** Makes the entries of a directory (renames, removals) durable. */
export function fsyncDirectory(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** {@link writeFileAtomically} for the agent's JSON state (0600: it can hold secrets). */
export function writeJsonAtomically(path: string, value: unknown, mode = 0o600): void {
  writeFileAtomically(path, `${JSON.stringify(value, null, 2)}\n`, { mode });
}

export function readJson<T>(path: string): T | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : null;
}
