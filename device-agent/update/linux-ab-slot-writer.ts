import { createHash } from 'node:crypto';
import {
  createWriteStream,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
} from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sha256 } from '../../lib/hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  PAYLOAD,
  type PayloadManifest,
  renderCmdline,
  SLOT_FILES,
  type Slot,
  slotDirectory,
  slotFromCmdline,
} from '../../protocol/linux-ab-layout.ts';
import { fsyncDirectory, writeFileAtomically } from '../../lib/atomic-file.ts';
import {
  isSafeRelativePath,
  MAX_MANIFEST_BYTES,
  parsePayloadManifest,
  readSmallEntry,
  type TarEntry,
  tarEntries,
} from './linux-ab-payload.ts';
import { InstallRefusedError } from './update-strategy.ts';

/** Where a `linux-ab` payload goes: one slot's device and its directory on the boot FAT. */
export interface SlotTarget {
  /** The boot FAT's mount point, which holds the slot's directory (`slot-a/`, `slot-b/`). */
  bootDir: string;
  /** This device's board: a payload built for another board is refused. Null: not checked. */
  board: string | null;
  slot: Slot;
  /** The slot's block device (a file in tests). */
  device: string;
  /** The artifact's name and version, for messages. */
  label: string;
}

const READ_CHUNK = 1024 * 1024;
const CMDLINE_MAX_BYTES = 64 * 1024;

/**
 * Writes a `linux-ab` payload into a slot, reading it in one pass in its order: payload.json,
 * then rootfs.squashfs straight into the slot's device, then boot/ into a staging directory that
 * replaces the slot's directory once every file matched its sha256. Any mismatch throws an
 * {@link InstallRefusedError} before the slot's directory is replaced.
 */
export async function writePayloadToSlot(
  artifactPath: string,
  target: SlotTarget,
  signal: AbortSignal,
): Promise<void> {
  const { label } = target;
  const slotDir = join(target.bootDir, slotDirectory(target.slot)).replace(/\/$/, '');
  const staging = `${slotDir}.new`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging);
  let payload: PayloadManifest | null = null;
  let rootfsWritten = false;
  const bootFilesSeen = new Set<string>();
  try {
    for await (const entry of tarEntries(artifactPath)) {
      signal.throwIfAborted();
      if (!payload) {
        if (entry.path !== PAYLOAD.manifest)
          throw refused(`${label}: the payload starts with ${entry.path}, not ${PAYLOAD.manifest}`);
        payload = parsePayloadManifest(
          (await readSmallEntry(entry, MAX_MANIFEST_BYTES, PAYLOAD.manifest)).toString('utf8'),
          label,
        );
        checkPayload(payload, target);
      } else if (!rootfsWritten) {
        if (entry.path !== PAYLOAD.rootfs)
          throw refused(`${label}: ${PAYLOAD.rootfs} must follow ${PAYLOAD.manifest}, found ${entry.path}`);
        await writeRootfs(entry, payload.rootfs, target, signal);
        rootfsWritten = true;
      } else {
        await writeBootEntry(entry, payload, staging, target);
        if (entry.type === 'File') bootFilesSeen.add(entry.path.slice(PAYLOAD.bootDirectory.length));
      }
    }
    if (!payload || !rootfsWritten)
      throw refused(`${label}: the payload has no ${payload ? PAYLOAD.rootfs : PAYLOAD.manifest}`);
    const missing = Object.keys(payload.bootFiles).filter((name) => !bootFilesSeen.has(name));
    if (missing.length > 0)
      throw refused(
        `${label}: ${PAYLOAD.manifest} lists ${missing.map((name) => PAYLOAD.bootDirectory + name).join(', ')}, which the payload lacks`,
      );
    fsyncDirectories(staging);
    rmSync(slotDir, { recursive: true, force: true });
    renameSync(staging, slotDir);
    fsyncDirectory(target.bootDir);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
}

function checkPayload(payload: PayloadManifest, target: SlotTarget): void {
  const { label, board } = target;
  if (board && payload.board !== board)
    throw refused(`${label} is an image for ${payload.board}; this device is ${board}`);
  for (const required of [SLOT_FILES.kernel, SLOT_FILES.cmdline]) {
    if (!payload.bootFiles[required])
      throw refused(`${label}: ${PAYLOAD.manifest} lists no ${PAYLOAD.bootDirectory}${required}`);
  }
}

async function writeBootEntry(
  entry: TarEntry,
  payload: PayloadManifest,
  staging: string,
  target: SlotTarget,
): Promise<void> {
  const { label } = target;
  if (!entry.path.startsWith(PAYLOAD.bootDirectory))
    throw refused(`${label}: unexpected entry ${entry.path} after ${PAYLOAD.rootfs}`);
  const name = entry.path.slice(PAYLOAD.bootDirectory.length).replace(/\/$/, '');
  if (entry.type === 'Directory') {
    if (name !== '' && !isSafeRelativePath(name)) throw refused(`${label}: unsafe entry ${entry.path}`);
    return;
  }
  if (entry.type !== 'File') throw refused(`${label}: ${entry.path} is a ${entry.type}, not a file`);
  const expected = payload.bootFiles[name];
  if (!expected) throw refused(`${label}: ${entry.path} is not listed in ${PAYLOAD.manifest}`);
  const destination = join(staging, name);
  mkdirSync(dirname(destination), { recursive: true });
  if (name === SLOT_FILES.cmdline) {
    const template = await readSmallEntry(entry, CMDLINE_MAX_BYTES, entry.path);
    checkFile(entry.path, label, sha256(template), template.length, expected);
    const rendered = renderCmdline(template.toString('utf8'), target.slot, target.device);
    // The agent on the new slot must be able to tell which slot it runs, or it would roll back.
    if (slotFromCmdline(rendered) !== target.slot)
      throw refused(
        `${label}: ${entry.path} renders to a command line without boardfleet.slot=${target.slot} (use the @SLOT@ placeholder)`,
      );
    writeFileAtomically(destination, `${rendered}\n`);
    return;
  }
  // Hashed as it streams to the FAT, so each boot file is read once.
  const hash = createHash('sha256');
  let size = 0;
  const output = createWriteStream(destination, { flush: true });
  await pipeline(
    entry.body,
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
    },
    output,
  );
  checkFile(entry.path, label, hash.digest('hex'), size, expected);
}

function refused(message: string): InstallRefusedError {
  return new InstallRefusedError('bad-payload', message);
}

function checkFile(
  path: string,
  label: string,
  actualSha256: string,
  actualSize: number,
  expected: { sha256: string; size: number },
): void {
  if (actualSize !== expected.size || actualSha256 !== expected.sha256)
    throw refused(
      `${label}: ${path} has ${actualSize} bytes and sha256 ${actualSha256}; ${PAYLOAD.manifest} says ${expected.size} bytes and ${expected.sha256}`,
    );
}

/**
 * Streams the root filesystem into the slot's device with positional writes, fsyncs, and reads
 * it back: the slot must then hold exactly the bytes payload.json describes.
 */
async function writeRootfs(
  entry: TarEntry,
  expected: { sha256: string; size: number },
  target: SlotTarget,
  signal: AbortSignal,
): Promise<void> {
  const { slot, device, label } = target;
  if (entry.size !== expected.size)
    throw refused(
      `${label}: ${PAYLOAD.rootfs} has ${entry.size} bytes; ${PAYLOAD.manifest} says ${expected.size}`,
    );
  let handle: FileHandle;
  try {
    // r+: a slot is an existing device (a file in tests); never create one where a typo points.
    handle = await open(device, 'r+');
  } catch (error) {
    throw new BoardfleetError(
      'slot-device',
      `cannot open slot ${slot}'s device ${device} for writing: ${(error as Error).message}`,
    );
  }
  try {
    const capacity = blockDeviceCapacity(device, (await handle.stat()).isBlockDevice());
    if (capacity !== null && capacity < expected.size)
      throw refused(
        `${label}: ${PAYLOAD.rootfs} has ${expected.size} bytes; slot ${slot} (${device}) holds only ${capacity}`,
      );
    const streamed = createHash('sha256');
    let position = 0;
    for await (const chunk of entry.body) {
      signal.throwIfAborted();
      streamed.update(chunk);
      for (let offset = 0; offset < chunk.length;) {
        const { bytesWritten } = await handle.write(chunk, offset, chunk.length - offset, position + offset);
        offset += bytesWritten;
      }
      position += chunk.length;
    }
    await handle.sync().catch((error: NodeJS.ErrnoException) => {
      // A special file that cannot sync has nothing to flush; the read-back below still judges it.
      if (error.code !== 'EINVAL') throw error;
    });
    const streamedSha256 = streamed.digest('hex');
    if (streamedSha256 !== expected.sha256)
      throw refused(
        `${label}: ${PAYLOAD.rootfs} has sha256 ${streamedSha256}; ${PAYLOAD.manifest} says ${expected.sha256} (a corrupt payload)`,
      );
    const readBack = await hashPrefix(handle, expected.size, signal);
    if (readBack.bytes !== expected.size)
      throw refused(
        `slot ${slot} (${device}) reads back only ${readBack.bytes} of the ${expected.size} bytes written to it`,
      );
    if (readBack.sha256 !== expected.sha256)
      throw refused(
        `slot ${slot} (${device}) reads back sha256 ${readBack.sha256} after writing; ${PAYLOAD.manifest} says ${expected.sha256}`,
      );
  } finally {
    await handle.close();
  }
}

/** The sha256 of the first `size` bytes: a block device is bigger than what was written to it. */
async function hashPrefix(
  handle: FileHandle,
  size: number,
  signal: AbortSignal,
): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(READ_CHUNK);
  let position = 0;
  while (position < size) {
    signal.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, Math.min(READ_CHUNK, size - position), position);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    position += bytesRead;
  }
  return { sha256: hash.digest('hex'), bytes: position };
}

/** A block device's size from sysfs; null for a regular file (tests), which grows as written. */
export function blockDeviceCapacity(device: string, isBlockDevice: boolean): number | null {
  if (!isBlockDevice) return null;
  const sectors = readFileSync(`/sys/class/block/${basename(realpathSync(device))}/size`, 'utf8');
  return Number(sectors.trim()) * 512;
}

/** fsyncs every directory under `root` (the files were fsynced as they were closed). */
function fsyncDirectories(root: string): void {
  for (const entry of readdirSync(root, { withFileTypes: true }))
    if (entry.isDirectory()) fsyncDirectories(join(root, entry.name));
  fsyncDirectory(root);
}
