import mqttPacket from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { PacketSizeGuard } from './packet-size-guard.ts';

const publish = (payloadBytes: number) =>
  mqttPacket.generate({
    cmd: 'publish',
    topic: 'devices/alpha/health',
    payload: Buffer.alloc(payloadBytes, 0x61),
    qos: 1,
    messageId: 7,
    retain: false,
    dup: false,
  });
const ping = mqttPacket.generate({ cmd: 'pingreq' });

/** Feeds `bytes` in chunks of `size`, returning the first verdict that is not null. */
function feedInChunks(guard: PacketSizeGuard, bytes: Buffer, size: number): number | null {
  for (let at = 0; at < bytes.length; at += size) {
    const verdict = guard.feed(bytes.subarray(at, at + size));
    if (verdict !== null) return verdict;
  }
  return null;
}

describe('PacketSizeGuard', () => {
  it.each([1, 2, 3, 7, 4096])('follows packets split into %i-byte chunks', (chunkSize) => {
    const guard = new PacketSizeGuard(1024);
    const stream = Buffer.concat([publish(1000), ping, publish(0), publish(200), ping]);
    expect(feedInChunks(guard, stream, chunkSize)).toBeNull();
  });

  it('refuses a packet announced over the limit from its length field alone', () => {
    const guard = new PacketSizeGuard(1024);
    const oversized = publish(2000);
    // Only the fixed header is fed: the verdict must not need the body.
    expect(guard.feed(oversized.subarray(0, 3))).toBe(oversized.length - 3);
  });

  it('refuses a CONNECT announcing 256 MB after its first bytes', () => {
    const guard = new PacketSizeGuard(128 * 1024);
    // 0x10 CONNECT, remaining length 268,435,455 (0xff 0xff 0xff 0x7f).
    expect(guard.feed(Buffer.from([0x10, 0xff, 0xff, 0xff]))).toBeGreaterThan(128 * 1024);
  });

  it('refuses a length field longer than four bytes', () => {
    const guard = new PacketSizeGuard(Number.MAX_SAFE_INTEGER);
    expect(guard.feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01]))).toBe(Number.POSITIVE_INFINITY);
  });

  it('accepts a packet exactly at the limit and refuses one byte more', () => {
    const exact = publish(500);
    const remaining = exact.length - 3;
    expect(new PacketSizeGuard(remaining).feed(exact)).toBeNull();
    expect(new PacketSizeGuard(remaining - 1).feed(exact)).toBe(remaining);
  });
});
