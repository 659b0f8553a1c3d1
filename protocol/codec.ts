import { type ChannelPayload, channelSchemas } from './schemas.ts';
import { type Channel, MAX_PAYLOAD_BYTES } from './topics.ts';

export type DecodeResult<C extends Channel> =
  | { ok: true; value: ChannelPayload[C] }
  | { ok: false; reason: 'oversized' | 'not-json' | 'schema'; detail: string };

/**
 * Decodes and validates one payload. Never throws: both ends log the reason and drop the
 * message, so one bad publisher cannot take a process down.
 */
export function decodePayload<C extends Channel>(channel: C, payload: Buffer | string): DecodeResult<C> {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (size > MAX_PAYLOAD_BYTES) {
    return {
      ok: false,
      reason: 'oversized',
      detail: `${size} bytes is over the ${MAX_PAYLOAD_BYTES}-byte limit`,
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch (error) {
    return { ok: false, reason: 'not-json', detail: (error as Error).message };
  }
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

/** Encodes a payload after checking it against its schema, so a bug surfaces at the sender. */
export function encodePayload<C extends Channel>(channel: C, value: ChannelPayload[C]): string {
  channelSchemas[channel].parse(value);
  return JSON.stringify(value);
}
