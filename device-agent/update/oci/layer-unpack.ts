import {
  chmodSync,
  closeSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import * as tar from 'tar';
import type { ReadEntry } from 'tar';
import { BoardfleetError } from '../../../protocol/errors.ts';
import type { ContainerIds } from './container-ids.ts';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const MAX_SYMLINKS = 40;

const refuse = (message: string): never => {
  throw new BoardfleetError('bad-oci-image', message);
};

/** The components of a path inside a layer; absolute paths and `..` are refused (a path escape). */
export function layerPathParts(path: string): string[] {
  if (path.startsWith('/')) return refuse(`layer entry ${path} is an absolute path`);
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) return refuse(`layer entry ${path} leaves the root (..)`);
  return parts;
}

/**
 * Where `parts` lands under `root` when `root` is `/`: symbolic links met on the way are followed
 * inside the root (an absolute target starts again at the root, `..` stops there), so no link a
 * lower layer planted can send a write outside it. The last part is followed only when asked.
 */
export function resolveInRoot(root: string, parts: readonly string[], followLast: boolean): string {
  const resolved: string[] = [];
  const queue = [...parts];
  let links = 0;
  while (queue.length > 0) {
    const part = queue.shift() as string;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    let target: string | null = null;
    if (queue.length > 0 || followLast) {
      try {
        if (lstatSync(candidate).isSymbolicLink()) target = readlinkSync(candidate);
      } catch {
        // Not there yet: the write creates it.
      }
    }
    if (target === null) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) refuse(`too many symbolic links under ${join(...resolved, part)}`);
    if (target.startsWith('/')) resolved.length = 0;
    queue.unshift(...target.split('/'));
  }
  return join(root, ...resolved);
}

/** Removes whatever is at `path` (a link itself, never what it points to). */
const remove = (path: string) => rmSync(path, { recursive: true, force: true });

function existingType(path: string): 'directory' | 'other' | null {
  try {
    return lstatSync(path).isDirectory() ? 'directory' : 'other';
  } catch {
    return null;
  }
}

/**
 * Applies one layer's entries to a root folder, in tar order: whiteouts (`.wh.NAME`) delete what
 * lower layers put there, an opaque marker (`.wh..wh..opq`) empties its folder of them; files,
 * folders and links are written without following any link out of the root. Devices and FIFOs are
 * skipped (the runtime provides `/dev`); owners are shifted into the containers' host ids (kept
 * as the agent when it is not root), setuid/setgid bits are not kept.
 */
class LayerWriter {
  /** What this layer wrote: a whiteout applies to lower layers only (image-spec, layer.md). */
  private readonly written = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly hostOwner: ContainerIds['hostOwner'],
  ) {}

  private own(entry: ReadEntry, path: string): void {
    const owner = this.hostOwner(entry.path, entry.uid ?? 0, entry.gid ?? 0);
    if (owner) lchownSync(path, owner.uid, owner.gid);
  }

  apply(entry: ReadEntry): void {
    const parts = layerPathParts(entry.path);
    if (parts.length === 0) return void entry.resume();
    const name = basename(entry.path);
    const parent = resolveInRoot(this.root, parts.slice(0, -1), true);
    if (name === OPAQUE) this.clearLower(parent);
    else if (name.startsWith(WHITEOUT)) this.removeLower(join(parent, name.slice(WHITEOUT.length)));
    else return this.write(entry, parent, join(parent, name));
    entry.resume();
  }

  private clearLower(dir: string): void {
    if (existingType(dir) !== 'directory') return;
    for (const child of readdirSync(dir)) this.removeLower(join(dir, child));
  }

  private removeLower(path: string): void {
    if (!this.written.has(path)) remove(path);
  }

  private write(entry: ReadEntry, parent: string, path: string): void {
    mkdirSync(parent, { recursive: true });
    const existing = existingType(path);
    if (entry.type === 'Directory') {
      if (existing === 'other') remove(path);
      if (existing !== 'directory') mkdirSync(path);
      // Owner-writable while later layers write into it; the container sees a read-only root.
      chmodSync(path, ((entry.mode ?? 0o755) & 0o1777) | 0o700);
      this.own(entry, path);
      this.written.add(path);
      return void entry.resume();
    }
    if (existing !== null) remove(path);
    switch (entry.type) {
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        const fd = openSync(path, 'wx', (entry.mode ?? 0o644) & 0o1777);
        this.own(entry, path);
        entry.on('data', (chunk: Buffer) => writeSync(fd, chunk));
        entry.on('end', () => closeSync(fd));
        break;
      }
      case 'SymbolicLink':
        // Kept as written: the target means something inside the container, never followed here.
        symlinkSync(entry.linkpath ?? '', path);
        this.own(entry, path);
        entry.resume();
        break;
      case 'Link':
        linkSync(resolveInRoot(this.root, layerPathParts(entry.linkpath ?? ''), false), path);
        entry.resume();
        break;
      default:
        return void entry.resume();
    }
    this.written.add(path);
  }
}

/**
 * Applies the layer stored at `layerPath` inside the image archive `archiveFile` (plain or gzip)
 * onto `root`, each entry owned by `hostOwner` of its owner in the layer. Streams it: the layer
 * is never copied out of the archive.
 */
export async function applyLayer(
  archiveFile: string,
  layerPath: string,
  root: string,
  hostOwner: ContainerIds['hostOwner'] = () => null,
): Promise<void> {
  const writer = new LayerWriter(root, hostOwner);
  let firstError: unknown = null;
  let unpacked: Promise<void> | null = null;
  await tar.t({
    file: archiveFile,
    filter: (path) => path.replace(/^(\.\/)+/, '') === layerPath,
    onReadEntry: (layer) => {
      const parser = new tar.Parser({
        strict: true,
        onReadEntry: (entry) => {
          if (firstError) return void entry.resume();
          try {
            writer.apply(entry);
          } catch (error) {
            firstError = error;
            entry.resume();
          }
        },
      });
      unpacked = new Promise((resolve, reject) => {
        parser.on('end', resolve);
        parser.on('error', reject);
      });
      layer.pipe(parser);
    },
  });
  if (!unpacked) refuse(`the image has no ${layerPath}`);
  try {
    await unpacked;
  } catch (error) {
    refuse(`layer ${layerPath} is not a readable tar: ${(error as Error).message}`);
  }
  if (firstError) throw firstError;
}
