import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BOOT2_SIZE, bootRomCrc32, hasValidBoot2, sealBoot2 } from './rp2040-boot2.ts';

describe('RP2040 stage-2 boot', () => {
  it('checksums as the boot ROM does: CRC-32/MPEG-2, whose catalogued check value is 0x0376E6E7', () => {
    const check = new TextEncoder().encode('123456789');
    expect(bootRomCrc32(check)).toBe(0x0376e6e7);
    // zlib's CRC-32 (reflected, inverted) would give another value: the boot ROM would refuse it.
    expect(crc32(check)).toBe(0xcbf43926);
    expect(bootRomCrc32(new Uint8Array(0))).toBe(0xffffffff);
  });

  it('pads the code to 252 bytes with zeros and ends with its checksum, little-endian', () => {
    const code = Uint8Array.from({ length: 100 }, (_, index) => index + 1);
    const sealed = sealBoot2(code);
    expect(sealed.length).toBe(BOOT2_SIZE);
    expect(sealed.subarray(0, 100)).toEqual(code);
    expect(sealed.subarray(100, 252).every((byte) => byte === 0)).toBe(true);
    const stored = new DataView(sealed.buffer).getUint32(252, true);
    expect(stored).toBe(bootRomCrc32(sealed.subarray(0, 252)));
    expect(hasValidBoot2(sealed)).toBe(true);
  });

  it('takes code of exactly 252 bytes and refuses more', () => {
    expect(hasValidBoot2(sealBoot2(new Uint8Array(252).fill(0xa5)))).toBe(true);
    expect(() => sealBoot2(new Uint8Array(253))).toThrow(
      expect.objectContaining({
        code: 'firmware-too-big',
        message: expect.stringMatching(/253 bytes/) as unknown,
      }),
    );
  });

  it('tells a stage-2 boot the boot ROM would skip: one bit changed, or too short', () => {
    const image = new Uint8Array(1024);
    image.set(sealBoot2(Uint8Array.of(0x00, 0xb5, 0x01, 0x4b)));
    expect(hasValidBoot2(image)).toBe(true);
    image[3] = image[3]! ^ 0x10;
    expect(hasValidBoot2(image)).toBe(false);
    expect(hasValidBoot2(new Uint8Array(255))).toBe(false);
  });
});
