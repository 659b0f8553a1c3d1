import { z } from 'zod';

/** PostgreSQL refuses a NOTIFY payload of 8000 bytes or more; every envelope stays under this. */
export const MAX_NOTIFY_BYTES = 7_900;
/** A change too large for one envelope is cut into parts of this many bytes (base64 in the envelope). */
const PART_BYTES = 5_000;
/** A change larger than this is refused at the sender (a device event is at most 64 KiB). */
export const MAX_CHANGE_BYTES = 1024 * 1024;
const MAX_PARTS = Math.ceil(MAX_CHANGE_BYTES / PART_BYTES);

/**
 * One notification: `o` the sending replica, `s` its sequence number (it also keeps two envelopes
 * of one transaction from being identical, which PostgreSQL would deliver once), then either `c`
 * whole changes or `p` part `[index, count]` of one change, `d` that part's bytes in base64.
 */
const envelopeSchema = z.union([
  z.object({ o: z.string(), s: z.number(), c: z.array(z.unknown()) }),
  z.object({
    o: z.string(),
    s: z.number(),
    p: z.tuple([z.number().int().nonnegative(), z.number().int().positive().max(MAX_PARTS)]),
    d: z.string().max(MAX_NOTIFY_BYTES),
  }),
]);

/**
 * Packs changes, in order, into as few payloads under MAX_NOTIFY_BYTES as they fit in; a change
 * too large for one is sent in parts, and one over MAX_CHANGE_BYTES is left out and reported.
 */
export function encodeChanges(
  origin: string,
  nextSeq: () => number,
  changes: readonly unknown[],
  onTooLarge: (bytes: number) => void,
): string[] {
  const head = () => `{"o":${JSON.stringify(origin)},"s":${nextSeq()}`;
  // The head's size with the longest sequence number, and `,"c":[` + `]}`.
  const overhead = Buffer.byteLength(`{"o":${JSON.stringify(origin)},"s":${Number.MAX_SAFE_INTEGER}`) + 8;
  const payloads: string[] = [];
  let batch: string[] = [];
  let batchBytes = 0;
  const close = () => {
    if (batch.length > 0) payloads.push(`${head()},"c":[${batch.join(',')}]}`);
    batch = [];
    batchBytes = 0;
  };
  for (const change of changes) {
    const json = JSON.stringify(change);
    const bytes = Buffer.byteLength(json);
    if (bytes > MAX_CHANGE_BYTES) {
      onTooLarge(bytes);
      continue;
    }
    if (overhead + bytes > MAX_NOTIFY_BYTES) {
      close();
      const whole = Buffer.from(json);
      const count = Math.ceil(whole.length / PART_BYTES);
      for (let index = 0; index < count; index++) {
        const part = whole.subarray(index * PART_BYTES, (index + 1) * PART_BYTES).toString('base64');
        payloads.push(`${head()},"p":[${index},${count}],"d":"${part}"}`);
      }
      continue;
    }
    if (overhead + batchBytes + bytes + 1 > MAX_NOTIFY_BYTES) close();
    batch.push(json);
    batchBytes += bytes + 1;
  }
  close();
  return payloads;
}

/** What a payload said: changes, or nothing yet (a part), or why it was dropped. */
export type Decoded = { origin: string; changes: unknown[] } | { dropped: string } | null;

/**
 * Turns payloads back into changes; those `ownOrigin` sent come back as nothing. Parts of one
 * change come one after another (the sender sends them in one transaction, which PostgreSQL
 * delivers in order), so each origin has at most one change being put together. Never throws: a
 * payload anyone could NOTIFY must not crash a replica.
 */
export class EnvelopeReader {
  private readonly assembling = new Map<string, Buffer[]>();

  constructor(private readonly ownOrigin: string) {}

  read(payload: string): Decoded {
    let json: unknown;
    try {
      json = JSON.parse(payload);
    } catch {
      return { dropped: 'not JSON' };
    }
    const envelope = envelopeSchema.safeParse(json);
    if (!envelope.success) return { dropped: 'not a change envelope' };
    const { o: origin } = envelope.data;
    if (origin === this.ownOrigin) return null;
    if ('c' in envelope.data) return { origin, changes: envelope.data.c };
    const [index, count] = envelope.data.p;
    const parts = index === 0 ? [] : this.assembling.get(origin);
    if (!parts || parts.length !== index) {
      this.assembling.delete(origin);
      return { dropped: `part ${index + 1} of ${count} without the parts before it` };
    }
    parts.push(Buffer.from(envelope.data.d, 'base64'));
    if (parts.length < count) {
      this.assembling.set(origin, parts);
      return null;
    }
    this.assembling.delete(origin);
    try {
      return { origin, changes: [JSON.parse(Buffer.concat(parts).toString('utf8'))] };
    } catch {
      return { dropped: 'parts that do not make up a change' };
    }
  }
}
