/**
 * Property-based tests of every MQTT channel's decoder (issue 13, "Tests that must exist"):
 * whatever arrives, `decodePayload` answers with a result and never throws, and what a sender
 * encodes comes back unchanged. A failure prints fast-check's seed and the shrunk payload.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { anyJson, mutatedLike, shapedLike } from '../test/support/schema-arbitrary.ts';
import { decodePayload, encodePayload } from './codec.ts';
import { type ChannelPayload, channelSchemas } from './schemas.ts';
import { type Channel, MAX_PAYLOAD_BYTES } from './topics.ts';

const CHANNELS = Object.keys(channelSchemas) as Channel[];
const RUNS = { numRuns: 300 };

/** The decoder's contract: a result, never an exception; refusals carry a reason and a detail. */
function decodesWithoutThrowing(channel: Channel, payload: Buffer | string): void {
  const decoded = decodePayload(channel, payload);
  if (decoded.ok) {
    expect(channelSchemas[channel].safeParse(decoded.value).success).toBe(true);
  } else {
    expect(['oversized', 'not-json', 'too-deep', 'schema']).toContain(decoded.reason);
    expect(decoded.detail.length).toBeGreaterThan(0);
  }
}

/** Valid payloads of a channel: shaped by its schema, kept when the schema (refinements too) agrees. */
const validPayload = (channel: Channel) =>
  shapedLike(channelSchemas[channel]).filter((value) => channelSchemas[channel].safeParse(value).success);

describe.each(CHANNELS)('the %s decoder', (channel) => {
  it('answers random bytes with a result, never an exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) =>
        decodesWithoutThrowing(channel, Buffer.from(bytes)),
      ),
      RUNS,
    );
  });

  it('answers random JSON with a result, and refuses what its schema refuses', () => {
    fc.assert(
      fc.property(anyJson, (value) => {
        const decoded = decodePayload(channel, JSON.stringify(value) ?? 'undefined');
        decodesWithoutThrowing(channel, JSON.stringify(value) ?? 'undefined');
        if (!channelSchemas[channel].safeParse(value).success) expect(decoded.ok).toBe(false);
      }),
      RUNS,
    );
  });

  it('round-trips every valid payload through encode and decode', () => {
    fc.assert(
      fc.property(validPayload(channel), (value) => {
        // NUL is removed on the way in (PostgreSQL refuses it) and a `__proto__` key is dropped (it
        // could only ever be an attempt at prototype pollution); everything else comes back as sent.
        const clean = JSON.parse(JSON.stringify(value).replaceAll('\\u0000', ''), (key, v: unknown) =>
          key === '__proto__' ? undefined : v,
        ) as unknown;
        const decoded = decodePayload(channel, encodePayload(channel, value as ChannelPayload[Channel]));
        // A string that was nothing but NUL is empty once cleaned: refused where the schema wants one.
        if (channelSchemas[channel].safeParse(clean).success)
          expect(decoded).toEqual({ ok: true, value: clean });
        else expect(decoded).toMatchObject({ ok: false, reason: 'schema' });
      }),
      RUNS,
    );
  });

  it('answers mutated valid payloads with a result: a changed field, a cut, a flipped byte', () => {
    const mutatedBytes = fc
      .tuple(validPayload(channel), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean())
      .map(([value, at, byte, cut]) => {
        const bytes = Buffer.from(JSON.stringify(value));
        const position = at % bytes.length;
        if (cut) return bytes.subarray(0, position);
        bytes[position] = byte;
        return bytes;
      });
    fc.assert(
      fc.property(
        fc.oneof(
          mutatedBytes,
          mutatedLike(channelSchemas[channel]).map((v) => JSON.stringify(v) ?? ''),
        ),
        (payload) => decodesWithoutThrowing(channel, payload),
      ),
      RUNS,
    );
  });
});

describe('decoders at the limits', () => {
  it.each(CHANNELS)('refuses %s payloads over the size limit and nested too deep, by reason', (channel) => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 17, max: 5000 }), (over, depth) => {
        const oversized = decodePayload(channel, Buffer.alloc(MAX_PAYLOAD_BYTES + over, 0x20));
        expect(oversized).toMatchObject({ ok: false, reason: 'oversized' });
        const deep = decodePayload(channel, `${'['.repeat(depth)}${']'.repeat(depth)}`);
        expect(deep).toMatchObject({ ok: false, reason: 'too-deep' });
      }),
      { numRuns: 30 },
    );
  });
});
