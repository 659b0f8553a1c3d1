import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join, posix } from 'node:path';
import { BoardfleetError } from '../../../protocol/errors.ts';
import { byCodeUnit } from '../../disk/file-tree.ts';

/**
 * Writes into one tree that will become a filesystem image. Every path is relative to the tree's
 * root, with `/` separators; every directory and file gets an explicit mode, so the host's umask
 * never reaches the image.
 */
export class TreeWriter {
  private constructor(readonly root: string) {}

  /** A writer for `root`, which must be missing or empty: stale files would end up in the image. */
  static async create(root: string): Promise<TreeWriter> {
    await mkdir(root, { recursive: true });
    const present = await readdir(root);
    if (present.length > 0) {
      throw new BoardfleetError(
        'tree-not-empty',
        `${root} is not empty (${present.slice(0, 3).join(', ')}…): assemble into a new directory`,
      );
    }
    await chmod(root, 0o755);
    return new TreeWriter(root);
  }

  path(relative: string): string {
    return join(this.root, checkRelative(relative));
  }

  async exists(relative: string): Promise<boolean> {
    try {
      await lstat(this.path(relative));
      return true;
    } catch {
      return false;
    }
  }

  /** Creates the directory and any missing parents, each 0755 unless `mode` says otherwise for the last. */
  async directory(relative: string, mode = 0o755): Promise<void> {
    const parts = checkRelative(relative).split('/');
    for (let depth = 1; depth <= parts.length; depth++) {
      const path = join(this.root, ...parts.slice(0, depth));
      const last = depth === parts.length;
      try {
        const info = await lstat(path);
        if (!info.isDirectory()) {
          throw new BoardfleetError('tree-conflict', `${path} exists and is not a directory`);
        }
        if (last) await chmod(path, mode);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        await mkdir(path);
        await chmod(path, last ? mode : 0o755);
      }
    }
  }

  /** Writes a file, replacing whatever was at that path (a symlink is replaced, never followed). */
  async file(relative: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const path = await this.prepare(relative);
    await writeFile(path, content);
    await chmod(path, mode);
  }

  /** Copies a host file in; its mode is kept unless `mode` is given. */
  async copy(source: string, relative: string, mode?: number): Promise<void> {
    const path = await this.prepare(relative);
    await copyFile(source, path);
    await chmod(path, mode ?? (await stat(source)).mode & 0o7777);
  }

  async symlink(relative: string, target: string): Promise<void> {
    await symlink(target, await this.prepare(relative));
  }

  /**
   * Copies a directory tree in, symlinks as symlinks and modes as they are, in sorted order.
   * `include` sees each path relative to `source` and may leave parts out.
   */
  async copyTree(
    source: string,
    relative: string,
    include: (path: string) => boolean = () => true,
  ): Promise<string[]> {
    const copied: string[] = [];
    const visit = async (inside: string): Promise<void> => {
      for (const name of (await readdir(join(source, inside))).sort(byCodeUnit)) {
        const path = inside ? `${inside}/${name}` : name;
        if (!include(path)) continue;
        const from = join(source, path);
        const to = relative ? `${relative}/${path}` : path;
        const info = await lstat(from);
        if (info.isDirectory()) {
          await this.directory(to, info.mode & 0o7777);
          await visit(path);
        } else if (info.isSymbolicLink()) {
          await this.symlink(to, await readlink(from));
          copied.push(to);
        } else if (info.isFile()) {
          await this.copy(from, to);
          copied.push(to);
        } else {
          throw new BoardfleetError(
            'image-input-unsupported',
            `${from} is neither a file, a directory nor a symlink; images are built from plain files`,
          );
        }
      }
    };
    await visit('');
    return copied;
  }

  /** Directories and executables under `relative` become 0755, other files 0644. */
  async normaliseModes(relative: string): Promise<void> {
    const visit = async (path: string): Promise<void> => {
      const info = await lstat(path);
      if (info.isSymbolicLink()) return;
      if (info.isDirectory()) {
        await chmod(path, 0o755);
        for (const name of await readdir(path)) await visit(join(path, name));
      } else {
        await chmod(path, info.mode & 0o111 ? 0o755 : 0o644);
      }
    };
    await visit(this.path(relative));
  }

  private async prepare(relative: string): Promise<string> {
    const checked = checkRelative(relative);
    const parent = posix.dirname(checked);
    if (parent !== '.') await this.directory(parent);
    const path = join(this.root, checked);
    await rm(path, { force: true });
    return path;
  }
}

/** Refuses absolute paths and `..`, so nothing is written outside the tree. */
function checkRelative(relative: string): string {
  const normal = posix.normalize(relative);
  if (relative.startsWith('/') || normal.startsWith('..') || normal === '.' || normal !== relative) {
    throw new BoardfleetError('tree-bad-path', `"${relative}" is not a plain path inside the tree`);
  }
  return relative;
}
