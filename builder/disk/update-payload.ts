import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { z } from 'zod';
import { sha256File } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { PayloadManifest } from '../../protocol/linux-ab-layout.ts';
import { PAYLOAD } from '../../protocol/linux-ab-layout.ts';
import { byCodeUnit, walkTree } from './file-tree.ts';

const BLOCK = 512;
const CHUNK = 1024 * 1024;
/** The largest size the 11 octal digits of a ustar header hold (8 GiB - 1). */
const MAX_ENTRY_SIZE = 8 ** 11 - 1;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
const fileDigest = z.object({ sha256: sha256Hex, size: z.number().int().nonnegative() });
/** Boot file names are relative paths without `.` or `..` segments: they become paths on the FAT. */
const bootFileName = z
  .string()
  .regex(/^[^/\0]+(\/[^/\0]+)*$/)
  .refine((name) => !name.split('/').some((part) => part === '.' || part === '..'), 'no . or .. segments');
const manifestSchema = z.object({
  schemaVersion: z.literal(1),
  board: z.string().min(1),
  version: z.string().min(1),
  rootfs: fileDigest,
  bootFiles: z.record(bootFileName, fileDigest),
});

/** The manifest for a payload: the sha256 and size of the root filesystem and of every boot file. */
export async function describeUpdatePayload(input: {
  board: string;
  version: string;
  rootfsFile: string;
  bootDir: string;
}): Promise<PayloadManifest> {
  const bootFiles: PayloadManifest['bootFiles'] = {};
  for (const entry of await walkTree(input.bootDir)) {
    if (entry.type === 'symlink') throw symlinkInBoot(input.bootDir, entry.path);
    if (entry.type === 'file') {
      bootFiles[entry.path] = { sha256: await sha256File(join(input.bootDir, entry.path)), size: entry.size };
    }
  }
  return {
    schemaVersion: 1,
    board: input.board,
    version: input.version,
    rootfs: { sha256: await sha256File(input.rootfsFile), size: (await stat(input.rootfsFile)).size },
    bootFiles,
  };
}

export interface WriteUpdatePayloadOptions {
  out: string;
  manifest: PayloadManifest;
  rootfsFile: string;
  /** Its files go under `boot/` in the payload; they must be exactly the manifest's `bootFiles`. */
  bootDir: string;
  /** Every entry's mtime (seconds since 1970); 0 when omitted. */
  epoch?: number;
}

/**
 * Writes an update payload: an uncompressed POSIX (ustar) tar of `payload.json`, then
 * `rootfs.squashfs`, then `boot/` with its files sorted, all owned by 0:0 with one mtime. The
 * files are hashed as they are copied; if anything differs from the manifest the output is
 * removed and the error says which file.
 */
export async function writeUpdatePayload(
  options: WriteUpdatePayloadOptions,
): Promise<{ size: number; sha256: string }> {
  const manifest = parseManifest(JSON.stringify(options.manifest), 'the manifest given');
  const mtime = options.epoch ?? 0;
  const bootEntries = await walkTree(options.bootDir);
  const listed = new Set(Object.keys(manifest.bootFiles));
  for (const entry of bootEntries) {
    if (entry.type === 'symlink') throw symlinkInBoot(options.bootDir, entry.path);
    if (entry.type === 'file' && !listed.delete(entry.path)) {
      throw mismatch(`${join(options.bootDir, entry.path)} is not in the manifest's bootFiles`);
    }
  }
  if (listed.size > 0)
    throw mismatch(
      `the manifest lists boot files missing from ${options.bootDir}: ${[...listed].join(', ')}`,
    );

  const output = await open(options.out, 'w');
  const hash = createHash('sha256');
  let position = 0;
  const append = async (bytes: Buffer): Promise<void> => {
    hash.update(bytes);
    await output.write(bytes, 0, bytes.length, position);
    position += bytes.length;
  };
  const appendFile = async (path: string, expected: { sha256: string; size: number }): Promise<void> => {
    const fileHash = createHash('sha256');
    let size = 0;
    for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) {
      fileHash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
      await append(chunk as Buffer);
    }
    const sha256 = fileHash.digest('hex');
    if (size !== expected.size || sha256 !== expected.sha256) {
      throw mismatch(
        `${path} is ${size} bytes with sha256 ${sha256}; the manifest says ${expected.size} bytes, ${expected.sha256}`,
      );
    }
    await append(Buffer.alloc(padTo(size)));
  };
  try {
    const canonical = {
      ...manifest,
      bootFiles: Object.fromEntries(Object.entries(manifest.bootFiles).sort(([a], [b]) => byCodeUnit(a, b))),
    };
    const manifestBytes = Buffer.from(`${JSON.stringify(canonical, null, 2)}\n`);
    await append(tarHeader({ name: PAYLOAD.manifest, type: 'file', size: manifestBytes.length, mtime }));
    await append(Buffer.concat([manifestBytes, Buffer.alloc(padTo(manifestBytes.length))]));
    await append(tarHeader({ name: PAYLOAD.rootfs, type: 'file', size: manifest.rootfs.size, mtime }));
    await appendFile(options.rootfsFile, manifest.rootfs);
    await append(tarHeader({ name: PAYLOAD.bootDirectory, type: 'directory', size: 0, mtime }));
    for (const entry of bootEntries) {
      const name = `${PAYLOAD.bootDirectory}${entry.path}`;
      if (entry.type === 'directory') {
        await append(tarHeader({ name: `${name}/`, type: 'directory', size: 0, mtime }));
        continue;
      }
      const expected = manifest.bootFiles[entry.path]!;
      await append(tarHeader({ name, type: 'file', size: expected.size, mtime }));
      await appendFile(join(options.bootDir, entry.path), expected);
    }
    // The end-of-archive marker: two zero blocks.
    await append(Buffer.alloc(2 * BLOCK));
    await output.close();
  } catch (error) {
    await output.close();
    await rm(options.out, { force: true });
    throw error;
  }
  return { size: position, sha256: hash.digest('hex') };
}

/** Reads and validates `payload.json`, the payload's first entry, without reading further. */
export async function readUpdatePayloadManifest(file: string): Promise<PayloadManifest> {
  const handle = await open(file, 'r');
  try {
    return await readManifestEntry(handle, file);
  } finally {
    await handle.close();
  }
}

export interface ExtractUpdatePayloadOptions {
  /**
   * Receives the root filesystem as a stream straight from the payload file (never held in
   * memory) and must consume all of it, e.g. by piping it into the inactive slot's device.
   */
  onRootfs: (stream: Readable, expected: { size: number; sha256: string }) => Promise<void>;
  /** Where the `boot/` files are written (created if missing), each fsync'd. */
  bootDir: string;
}

/**
 * Checks and unpacks an update payload: the manifest first, then the root filesystem streamed
 * to `onRootfs`, then the boot files into `bootDir`. Every size and sha256 is checked against
 * the manifest; a mismatch, an entry out of the contract's order or an unlisted file is a
 * `payload-corrupt` error, thrown once the offending entry has been read.
 */
export async function extractUpdatePayload(
  file: string,
  options: ExtractUpdatePayloadOptions,
): Promise<PayloadManifest> {
  const handle = await open(file, 'r');
  try {
    const manifest = await readManifestEntry(handle, file);
    const manifestEntry = await readHeader(handle, file, 0);
    let position = BLOCK + blocksFor(manifestEntry.size);

    const rootfs = await readHeader(handle, file, position);
    if (rootfs.name !== PAYLOAD.rootfs || rootfs.type !== 'file') {
      throw corrupt(file, `expected ${PAYLOAD.rootfs} after the manifest, found ${rootfs.name || 'the end'}`);
    }
    if (rootfs.size !== manifest.rootfs.size) {
      throw corrupt(
        file,
        `${PAYLOAD.rootfs} is ${rootfs.size} bytes; the manifest says ${manifest.rootfs.size}`,
      );
    }
    position += BLOCK;
    await streamRootfs(file, position, manifest.rootfs, options.onRootfs);
    position += blocksFor(rootfs.size);

    const bootDirectory = await readHeader(handle, file, position);
    if (bootDirectory.name !== PAYLOAD.bootDirectory || bootDirectory.type !== 'directory') {
      throw corrupt(
        file,
        `expected ${PAYLOAD.bootDirectory} after the root filesystem, found ${bootDirectory.name || 'the end'}`,
      );
    }
    position += BLOCK;
    await mkdir(options.bootDir, { recursive: true });
    const pending = new Set(Object.keys(manifest.bootFiles));
    for (;;) {
      const entry = await readHeader(handle, file, position);
      position += BLOCK;
      if (entry.name === '') break;
      if (!entry.name.startsWith(PAYLOAD.bootDirectory)) {
        throw corrupt(file, `${entry.name} is outside ${PAYLOAD.bootDirectory}`);
      }
      const relative = entry.name.slice(PAYLOAD.bootDirectory.length).replace(/\/$/, '');
      if (entry.type === 'directory') {
        if (!Object.keys(manifest.bootFiles).some((name) => name.startsWith(`${relative}/`))) {
          throw corrupt(file, `directory ${entry.name} holds no file the manifest lists`);
        }
        await mkdir(join(options.bootDir, relative), { recursive: true });
        continue;
      }
      const expected = manifest.bootFiles[relative];
      if (!expected || !pending.delete(relative))
        throw corrupt(file, `${entry.name} is not in the manifest (or appears twice)`);
      if (entry.size !== expected.size) {
        throw corrupt(file, `${entry.name} is ${entry.size} bytes; the manifest says ${expected.size}`);
      }
      await copyBootFile(handle, file, position, entry.name, expected, join(options.bootDir, relative));
      position += blocksFor(entry.size);
    }
    if (pending.size > 0) throw corrupt(file, `boot files missing: ${[...pending].join(', ')}`);
    return manifest;
  } finally {
    await handle.close();
  }
}

async function streamRootfs(
  file: string,
  start: number,
  expected: { size: number; sha256: string },
  onRootfs: ExtractUpdatePayloadOptions['onRootfs'],
): Promise<void> {
  const hash = createHash('sha256');
  let seen = 0;
  const source =
    expected.size === 0
      ? Readable.from([])
      : createReadStream(file, { start, end: start + expected.size - 1, highWaterMark: CHUNK });
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      seen += chunk.length;
      callback(null, chunk);
    },
  });
  source.on('error', (error: Error) => checked.destroy(error));
  source.pipe(checked);
  try {
    await onRootfs(checked, expected);
  } finally {
    source.destroy();
  }
  if (!checked.readableEnded) {
    throw new BoardfleetError(
      'payload-rootfs-unread',
      `the root filesystem handler returned after reading ${seen} of ${expected.size} bytes of ${PAYLOAD.rootfs}`,
    );
  }
  const sha256 = hash.digest('hex');
  if (seen !== expected.size || sha256 !== expected.sha256) {
    throw corrupt(file, `${PAYLOAD.rootfs} has sha256 ${sha256}; the manifest says ${expected.sha256}`);
  }
}

async function copyBootFile(
  handle: FileHandle,
  file: string,
  start: number,
  name: string,
  expected: { size: number; sha256: string },
  target: string,
): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const output = await open(target, 'w');
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(Math.min(CHUNK, Math.max(expected.size, 1)));
  try {
    for (let done = 0; done < expected.size;) {
      const want = Math.min(buffer.length, expected.size - done);
      const { bytesRead } = await handle.read(buffer, 0, want, start + done);
      if (bytesRead === 0) throw corrupt(file, `${name} is cut short`);
      const chunk = buffer.subarray(0, bytesRead);
      hash.update(chunk);
      await output.write(chunk);
      done += bytesRead;
    }
    // The agent reboots right after writing a slot: the files must be on the card by then.
    await output.sync();
  } finally {
    await output.close();
  }
  const sha256 = hash.digest('hex');
  if (sha256 !== expected.sha256)
    throw corrupt(file, `${name} has sha256 ${sha256}; the manifest says ${expected.sha256}`);
}

async function readManifestEntry(handle: FileHandle, file: string): Promise<PayloadManifest> {
  const header = await readHeader(handle, file, 0);
  if (header.name !== PAYLOAD.manifest || header.type !== 'file') {
    throw corrupt(file, `the first entry is ${header.name || 'the end'}, not ${PAYLOAD.manifest}`);
  }
  if (header.size > CHUNK)
    throw corrupt(file, `${PAYLOAD.manifest} is ${header.size} bytes, too large for a manifest`);
  const bytes = Buffer.alloc(header.size);
  const { bytesRead } = await handle.read(bytes, 0, header.size, BLOCK);
  if (bytesRead !== header.size) throw corrupt(file, `${PAYLOAD.manifest} is cut short`);
  return parseManifest(bytes.toString('utf8'), `${PAYLOAD.manifest} in ${file}`);
}

function parseManifest(text: string, where: string): PayloadManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new BoardfleetError('payload-corrupt', `${where} is not JSON: ${String(error)}`);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
    );
    throw new BoardfleetError(
      'payload-corrupt',
      `${where} is not a valid payload manifest: ${problems.join('; ')}`,
    );
  }
  return parsed.data;
}

interface TarHeader {
  /** Empty at the end-of-archive marker. */
  name: string;
  type: 'file' | 'directory';
  size: number;
}

async function readHeader(handle: FileHandle, file: string, position: number): Promise<TarHeader> {
  const block = Buffer.alloc(BLOCK);
  const { bytesRead } = await handle.read(block, 0, BLOCK, position);
  if (bytesRead !== BLOCK)
    throw corrupt(file, `the archive ends at byte ${position + bytesRead}, inside a header`);
  if (block.every((byte) => byte === 0)) return { name: '', type: 'file', size: 0 };
  const stored = Number.parseInt(field(block, 148, 8), 8);
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  if (stored !== sum) throw corrupt(file, `the tar header at byte ${position} has a bad checksum`);
  if (field(block, 257, 6) !== 'ustar')
    throw corrupt(file, `the entry at byte ${position} is not a POSIX ustar header`);
  const prefix = field(block, 345, 155);
  const name = `${prefix ? `${prefix}/` : ''}${field(block, 0, 100)}`;
  const flag = String.fromCharCode(block[156] ?? 0);
  if (flag !== '0' && flag !== '\0' && flag !== '5') {
    throw corrupt(
      file,
      `${name} is a tar entry of type "${flag}"; a payload holds only files and directories`,
    );
  }
  return {
    name,
    type: flag === '5' ? 'directory' : 'file',
    size: Number.parseInt(field(block, 124, 12) || '0', 8),
  };
}

export function tarHeader(entry: {
  name: string;
  type: 'file' | 'directory';
  size: number;
  mtime: number;
}): Buffer {
  if (entry.size > MAX_ENTRY_SIZE) {
    throw new BoardfleetError(
      'payload-too-large',
      `${entry.name} is ${entry.size} bytes, over the 8 GiB a ustar entry holds`,
    );
  }
  const { prefix, name } = splitName(entry.name);
  const block = Buffer.alloc(BLOCK);
  const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, '0')}\0`;
  block.write(name, 0, 'utf8');
  block.write(octal(entry.type === 'directory' ? 0o755 : 0o644, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(entry.size, 12), 124, 'ascii');
  block.write(octal(entry.mtime, 12), 136, 'ascii');
  block.write(entry.type === 'directory' ? '5' : '0', 156, 'ascii');
  block.write('ustar\u000000', 257, 'ascii');
  block.write(octal(0, 8), 329, 'ascii');
  block.write(octal(0, 8), 337, 'ascii');
  block.write(prefix, 345, 'utf8');
  block.fill(0x20, 148, 156);
  const sum = block.reduce((total, byte) => total + byte, 0);
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return block;
}

/** ustar keeps 100 bytes of name and 155 of directory prefix. */
function splitName(path: string): { prefix: string; name: string } {
  if (Buffer.byteLength(path) <= 100) return { prefix: '', name: path };
  for (let slash = path.indexOf('/'); slash >= 0; slash = path.indexOf('/', slash + 1)) {
    const prefix = path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(name) <= 100 && name) return { prefix, name };
  }
  throw new BoardfleetError('payload-name-too-long', `${path} is too long for a ustar header`);
}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw
    .subarray(0, end < 0 ? length : end)
    .toString('utf8')
    .trim();
}

const padTo = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;
const blocksFor = (size: number): number => size + padTo(size);

function corrupt(file: string, why: string): BoardfleetError {
  return new BoardfleetError('payload-corrupt', `${file} is not a valid update payload: ${why}`);
}

function mismatch(why: string): BoardfleetError {
  return new BoardfleetError('payload-mismatch', `cannot write the update payload: ${why}`);
}

function symlinkInBoot(bootDir: string, path: string): BoardfleetError {
  return new BoardfleetError(
    'image-input-unsupported',
    `${join(bootDir, path)} is a symlink; boot files go on a FAT partition, which cannot hold one`,
  );
}
