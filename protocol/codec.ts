import { type ChannelPayload, channelSchemas } from './schemas.ts';
import { MAX_PAYLOAD_BYTES } from './topics.ts';

/** A device channel, or the server's hello. */
export type PayloadKind = keyof ChannelPayload;

export type DecodeResult<C extends PayloadKind> =
  | { ok: true; value: ChannelPayload[C] }
  | { ok: false; reason: 'oversized' | 'not-json' | 'too-deep' | 'schema'; detail: string };

/**
 * The deepest nesting of objects and arrays a payload may have (our own payloads need 3). A
 * deeper one, which fits in 64 KiB thousands of levels deep, would overflow the stack of
 * whatever recurses over it later (`JSON.stringify` when storing an event's data).
 */
export const MAX_JSON_DEPTH = 16;

/**
 * Decodes and validates one payload. Never throws: both ends log the reason and drop the
 * message, so one bad publisher cannot take a process down.
 */
export function decodePayload<C extends PayloadKind>(channel: C, payload: Buffer | string): DecodeResult<C> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_PAYLOAD_BYTES) {
    return {
      ok: false,
      reason: 'oversized',
      detail: `${size} bytes is over the ${MAX_PAYLOAD_BYTES}-byte limit`,
    };
  }
  const text = payload.toString();
  let json: unknown;
  try {
    // JSON.parse makes a `__proto__` key an own property, which a later Object.assign or spread
    // would turn into a prototype; such keys go. A key can hide behind \u escapes, hence both checks.
    json =
      text.includes('__proto__') || text.includes('\\u')
        ? JSON.parse(text, (key, value: unknown) => (key === '__proto__' ? undefined : value))
        : JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: 'not-json', detail: (error as Error).message };
  }
  if (nestedDeeperThan(json, MAX_JSON_DEPTH)) {
    return { ok: false, reason: 'too-deep', detail: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  }
  // JSON can carry NUL only as the escape \u0000; most payloads have none and skip the walk.
  if (text.includes('\\u0000')) json = withoutNul(json);
  const parsed = channelSchemas[channel].safeParse(json);
  if (!parsed.success) {
    const detail = parsed.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
      .join('; ');
    return { ok: false, reason: 'schema', detail };
  }
  return { ok: true, value: parsed.data as ChannelPayload[C] };
}

function nestedDeeperThan(value: unknown, levels: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (levels === 0) return true;
  for (const child of Object.values(value)) if (nestedDeeperThan(child, levels - 1)) return true;
  return false;
}

/**
 * Removes NUL characters from every string and key. PostgreSQL refuses them in text, and a
 * device's failure message may quote a byte it read from a board: the report matters more
 * than that byte. Only called on a payload already known to be at most MAX_JSON_DEPTH deep.
 */
function withoutNul(value: unknown): unknown {
  if (typeof value === 'string') return value.replaceAll('\0', '');
  if (Array.isArray(value)) return value.map(withoutNul);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, child]) => [key.replaceAll('\0', ''), withoutNul(child)]),
  );
}

/** Encodes a payload after checking it against its schema, so a bug surfaces at the sender. */
export function encodePayload<C extends PayloadKind>(channel: C, value: ChannelPayload[C]): string {
  channelSchemas[channel].parse(value);
  return JSON.stringify(value);
}
