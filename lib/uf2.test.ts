import { describe, expect, it } from 'vitest';
import { decodeUf2, encodeUf2, UF2_BLOCK_SIZE, Uf2Flag, type Uf2Target, uf2TargetOf } from './uf2.ts';

// boards/pico.yaml's flash and family id, as the board catalogue hands them over.
const pico = uf2TargetOf({
  uf2: { familyId: 0xe48bff56 },
  flash: { address: 0x1000_0000, size: 2 * 1024 * 1024, pageSize: 256 },
});
const FLASH = 0x1000_0000;
const NRF52_FAMILY = 0x1b57745f;

/** An image whose bytes tell their offset apart (and are never 0xFF, the padding). */
const imageOf = (length: number) => Uint8Array.from({ length }, (_, index) => index % 251);

const wordAt = (file: Uint8Array, block: number, at: number) =>
  new DataView(file.buffer, file.byteOffset).getUint32(block * UF2_BLOCK_SIZE + at, true);

function withWord(file: Uint8Array, block: number, at: number, value: number): Uint8Array {
  const copy = file.slice();
  new DataView(copy.buffer).setUint32(block * UF2_BLOCK_SIZE + at, value >>> 0, true);
  return copy;
}

const blocks = (file: Uint8Array) =>
  Array.from({ length: file.length / UF2_BLOCK_SIZE }, (_, index) =>
    file.subarray(index * UF2_BLOCK_SIZE, (index + 1) * UF2_BLOCK_SIZE),
  );

const joined = (parts: Uint8Array[]) => {
  const file = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    file.set(part, offset);
    offset += part.length;
  }
  return file;
};

describe('UF2', () => {
  it("targets the Pico's boot ROM: family RP2040, 256-byte pages of the flash at 0x10000000", () => {
    expect(pico).toEqual({
      familyId: 0xe48bff56,
      flashAddress: FLASH,
      flashSize: 2 * 1024 * 1024,
      payloadSize: 256,
    });
  });

  it('writes one 512-byte block per 256 bytes, each with its magic numbers, address, numbering and family', () => {
    const file = encodeUf2(imageOf(600), pico);
    expect(file.length).toBe(3 * UF2_BLOCK_SIZE);
    for (let block = 0; block < 3; block++) {
      expect([0, 4, 8, 12, 16, 20, 24, 28, 508].map((at) => wordAt(file, block, at))).toEqual([
        0x0a324655,
        0x9e5d5157,
        Uf2Flag.familyIdPresent,
        FLASH + block * 256,
        256,
        block,
        3,
        0xe48bff56,
        0x0ab16f30,
      ]);
      // The unused part of the data area is zero, as the format asks.
      expect(file.subarray(block * 512 + 32 + 256, block * 512 + 508).every((byte) => byte === 0)).toBe(true);
    }
    expect(file.subarray(512 + 32, 512 + 32 + 256)).toEqual(imageOf(600).subarray(256, 512));
    // The last page is filled up as erased flash reads.
    const lastPayload = file.subarray(1024 + 32, 1024 + 32 + 256);
    expect(lastPayload.subarray(0, 88)).toEqual(imageOf(600).subarray(512));
    expect(lastPayload.subarray(88).every((byte) => byte === 0xff)).toBe(true);
  });

  it('reads back what it wrote, from the address it was written for', () => {
    const image = imageOf(1000);
    const decoded = decodeUf2(encodeUf2(image, pico, FLASH + 0x1000), pico);
    expect(decoded).toMatchObject({ ok: true, address: FLASH + 0x1000, blockCount: 4 });
    if (!decoded.ok) return;
    expect(decoded.bytes.subarray(0, 1000)).toEqual(image);
    expect(decoded.bytes.length).toBe(1024);
  });

  it('reads blocks in any order, skipping blocks of other families and blocks not for the main flash', () => {
    const ours = blocks(encodeUf2(imageOf(512), pico));
    const nordic = encodeUf2(imageOf(256), { ...pico, familyId: NRF52_FAMILY });
    const comment = withWord(encodeUf2(imageOf(256), pico), 0, 8, Uf2Flag.notMainFlash);
    const decoded = decodeUf2(joined([ours[1]!, nordic, comment, ours[0]!]), pico);
    expect(decoded).toMatchObject({ ok: true, address: FLASH, blockCount: 2 });
    if (decoded.ok) expect(decoded.bytes).toEqual(imageOf(512));
  });

  it.each<[string, () => Uint8Array, string, RegExp]>([
    [
      'an empty file',
      () => new Uint8Array(0),
      'truncated',
      /0 bytes is not a whole number of 512-byte blocks/,
    ],
    [
      'a file cut inside a block',
      () => encodeUf2(imageOf(600), pico).subarray(0, 1000),
      'truncated',
      /1000 bytes/,
    ],
    [
      'a wrong first magic',
      () => withWord(encodeUf2(imageOf(600), pico), 1, 0, 0x0a324656),
      'bad-magic',
      /block 1: the word at byte 0 is 0x0a324656/,
    ],
    [
      'a wrong second magic',
      () => withWord(encodeUf2(imageOf(600), pico), 0, 4, 0),
      'bad-magic',
      /block 0: the word at byte 4/,
    ],
    [
      'a wrong final magic',
      () => withWord(encodeUf2(imageOf(600), pico), 2, 508, 0xffffffff),
      'bad-magic',
      /block 2: the word at byte 508 is 0xffffffff, not the UF2 magic 0x0ab16f30/,
    ],
    [
      'an image for another chip',
      () => encodeUf2(imageOf(600), { ...pico, familyId: NRF52_FAMILY }),
      'wrong-family',
      /none of its 3 blocks is for family 0xe48bff56: it was built for another chip/,
    ],
    [
      'blocks without a family id',
      () => [0, 1].reduce((file, block) => withWord(file, block, 8, 0), encodeUf2(imageOf(512), pico)),
      'wrong-family',
      /none of its 2 blocks/,
    ],
    [
      'a block for SRAM',
      () => withWord(encodeUf2(imageOf(600), pico), 1, 12, 0x2000_0000),
      'out-of-range',
      /block 1: address 0x20000000 is outside the flash \(0x10000000 to 0x10200000\)/,
    ],
    [
      'a block past the end of the flash',
      () => withWord(encodeUf2(imageOf(600), pico), 2, 12, FLASH + 2 * 1024 * 1024),
      'out-of-range',
      /block 2: address 0x10200000/,
    ],
    [
      'a block off a page boundary',
      () => withWord(encodeUf2(imageOf(600), pico), 1, 12, FLASH + 0x180),
      'bad-block',
      /block 1: 256 bytes at 0x10000180; the boot ROM takes 256-byte pages/,
    ],
    [
      'a payload other than a page',
      () => withWord(encodeUf2(imageOf(600), pico), 0, 16, 128),
      'bad-block',
      /block 0: 128 bytes/,
    ],
    [
      'a payload over the block',
      () => withWord(encodeUf2(imageOf(600), pico), 0, 16, 477),
      'bad-block',
      /477 bytes is over the 476/,
    ],
    [
      'a block number beyond the count',
      () => withWord(encodeUf2(imageOf(600), pico), 2, 20, 3),
      'bad-block',
      /block 2: block number 3 is not below the block count 3/,
    ],
    [
      'a block number twice',
      () => withWord(encodeUf2(imageOf(600), pico), 2, 20, 1),
      'bad-block',
      /block 2: block number 1 appears twice/,
    ],
    [
      'blocks that disagree on the count',
      () => withWord(encodeUf2(imageOf(600), pico), 1, 24, 4),
      'bad-block',
      /block 1: says the file has 4 blocks, earlier blocks said 3/,
    ],
    [
      'an address written twice',
      () => withWord(encodeUf2(imageOf(600), pico), 2, 12, FLASH + 0x100),
      'bad-block',
      /block 2: address 0x10000100 was already written by block 1/,
    ],
    [
      'a missing block',
      () => {
        const [first, , last] = blocks(encodeUf2(imageOf(600), pico));
        return joined([first!, last!]);
      },
      'incomplete',
      /2 of its 3 blocks are there/,
    ],
    [
      'a file container',
      () => withWord(encodeUf2(imageOf(256), pico), 0, 8, Uf2Flag.familyIdPresent | Uf2Flag.fileContainer),
      'bad-block',
      /a file-container block/,
    ],
  ])('refuses %s', (_name, file, reason, detail) => {
    const decoded = decodeUf2(file(), pico);
    expect(decoded).toMatchObject({ ok: false, reason });
    if (!decoded.ok) expect(decoded.detail).toMatch(detail);
  });

  it.each<[string, Uint8Array, Partial<Uf2Target> & { address?: number }, string, RegExp]>([
    ['an empty image', new Uint8Array(0), {}, 'invalid-arguments', /the firmware image is empty/],
    [
      'an image larger than the flash',
      imageOf(2 * 1024 * 1024 + 1),
      {},
      'firmware-too-big',
      /runs 1 bytes past the end of the 2097152-byte flash/,
    ],
    [
      'an image that starts below the flash',
      imageOf(16),
      { address: 0x0fff_ff00 },
      'invalid-arguments',
      /an image at 0x0fffff00 starts before the flash, which starts at 0x10000000/,
    ],
    [
      'an image that starts off a page',
      imageOf(16),
      { address: FLASH + 4 },
      'invalid-arguments',
      /an image at 0x10000004 does not start on a 256-byte boundary/,
    ],
    [
      'a payload too big for a block',
      imageOf(16),
      { payloadSize: 512 },
      'invalid-arguments',
      /a UF2 payload of 512 bytes is not possible/,
    ],
  ])('will not write %s', (_name, image, { address, ...target }, code, message) => {
    expect(() => encodeUf2(image, { ...pico, ...target }, address)).toThrow(
      expect.objectContaining({ code, message: expect.stringMatching(message) as unknown }),
    );
  });
});
