import { createReadStream } from 'node:fs';
import * as tar from 'tar';
import { z } from 'zod';
import { PAYLOAD, type PayloadManifest } from '../../protocol/linux-ab-layout.ts';
import { InstallRefusedError } from './update-strategy.ts';

const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex sha256');
const fileSchema = z.object({ sha256: sha256Schema, size: z.number().int().nonnegative() });

/** `payload.json`, checked as it is read (unknown keys are ignored, so a newer builder can add some). */
const payloadManifestSchema = z.object({
  schemaVersion: z.literal(1),
  board: z.string().min(1),
  version: z.string().min(1),
  rootfs: fileSchema,
  bootFiles: z.record(z.string(), fileSchema),
}) satisfies z.ZodType<PayloadManifest>;

/** The manifest is small; anything bigger is not one. */
export const MAX_MANIFEST_BYTES = 1024 * 1024;

export interface TarEntry {
  /** The entry's path as stored (`boot/vmlinuz`). */
  path: string;
  type: string;
  size: number;
  /** The entry's bytes; read them all (or none) before asking for the next entry. */
  body: AsyncIterable<Buffer>;
}

/**
 * The entries of a tar file, one at a time and streamed: the parser reads the file only as fast
 * as the current entry's body is consumed, so a root filesystem of any size passes through a
 * small buffer. Stopping early (a `break`, an error) closes the file.
 */
export async function* tarEntries(file: string): AsyncGenerator<TarEntry> {
  const parser = new tar.Parser({ strict: true });
  const input = createReadStream(file);
  const queue: tar.ReadEntry[] = [];
  let finished = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const poke = () => {
    const waiting = wake;
    wake = null;
    waiting?.();
  };
  parser.on('entry', (entry: tar.ReadEntry) => {
    queue.push(entry);
    poke();
  });
  parser.on('error', (error: unknown) => {
    failure ??= error;
    poke();
  });
  parser.on('close', () => {
    finished = true;
    poke();
  });
  input.on('error', (error) => {
    failure ??= error;
    poke();
  });
  input.pipe(parser);
  try {
    for (;;) {
      const entry = queue.shift();
      if (entry) {
        yield { path: entry.path, type: entry.type, size: entry.size ?? 0, body: entry };
        // Whatever the consumer left unread is skipped, so the parser can move on.
        entry.resume();
        continue;
      }
      if (failure) throw failure;
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    input.destroy();
  }
}

/** Reads a whole (small) entry into memory, refusing one larger than `limit` bytes. */
export async function readSmallEntry(entry: TarEntry, limit: number, label: string): Promise<Buffer> {
  if (entry.size > limit)
    throw new InstallRefusedError(
      'bad-payload',
      `${label} has ${entry.size} bytes; at most ${limit} expected`,
    );
  const chunks: Buffer[] = [];
  for await (const chunk of entry.body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Parses and checks `payload.json`; `label` names the payload in errors. */
export function parsePayloadManifest(text: string, label: string): PayloadManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InstallRefusedError(
      'bad-payload',
      `${label}: ${PAYLOAD.manifest} is not JSON: ${(error as Error).message}`,
    );
  }
  const parsed = payloadManifestSchema.safeParse(json);
  if (!parsed.success) {
    throw new InstallRefusedError(
      'bad-payload',
      `${label}: ${PAYLOAD.manifest}: ${parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top)'}: ${issue.message}`).join('; ')}`,
    );
  }
  for (const name of Object.keys(parsed.data.bootFiles)) {
    if (!isSafeRelativePath(name))
      throw new InstallRefusedError(
        'bad-payload',
        `${label}: ${PAYLOAD.manifest} lists the boot file "${name}", which is not a plain path under ${PAYLOAD.bootDirectory}`,
      );
  }
  return parsed.data as PayloadManifest;
}

/** A relative path with no `..`, `.` or empty segment: it cannot leave the directory it is joined to. */
export function isSafeRelativePath(path: string): boolean {
  if (path.length === 0 || path.startsWith('/') || path.includes('\\') || path.includes('\0')) return false;
  return path.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}
