import { BoardfleetError } from '../protocol/errors.ts';

/**
 * The RP2040's stage-2 boot: the first 256 bytes of flash, which the boot ROM copies to SRAM and
 * runs to set the flash up for execute-in-place. The ROM runs it only if its last 4 bytes hold
 * the CRC32 of the first 252 (RP2040 datasheet, "Boot Sequence"); otherwise it falls back to the
 * USB drive, so a wrong checksum looks like a board that ignores its firmware.
 */
export const BOOT2_SIZE = 256;
const BOOT2_CODE_SIZE = BOOT2_SIZE - 4;

/**
 * CRC-32 as the boot ROM computes it: polynomial 0x04C11DB7, initial value 0xFFFFFFFF, neither
 * input nor output reflected, no final XOR (the catalogued CRC-32/MPEG-2). Not zlib's CRC-32,
 * which reflects both and inverts the result.
 */
export function bootRomCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte << 24;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
    }
  }
  return crc >>> 0;
}

/**
 * Pads a compiled stage-2 boot to 252 bytes with zeros and appends its checksum (little-endian),
 * giving the 256 bytes that go first in flash. Code over 252 bytes is refused.
 */
export function sealBoot2(code: Uint8Array): Uint8Array {
  if (code.length > BOOT2_CODE_SIZE) {
    throw new BoardfleetError(
      'firmware-too-big',
      `the stage-2 boot is ${code.length} bytes; the boot ROM loads ${BOOT2_SIZE}, the last 4 of them its checksum, so the code must fit in ${BOOT2_CODE_SIZE}`,
    );
  }
  const sealed = new Uint8Array(BOOT2_SIZE);
  sealed.set(code);
  new DataView(sealed.buffer).setUint32(
    BOOT2_CODE_SIZE,
    bootRomCrc32(sealed.subarray(0, BOOT2_CODE_SIZE)),
    true,
  );
  return sealed;
}

/** Whether a flash image starts with a stage-2 boot the boot ROM will run. */
export function hasValidBoot2(image: Uint8Array): boolean {
  if (image.length < BOOT2_SIZE) return false;
  const stored = new DataView(image.buffer, image.byteOffset + BOOT2_CODE_SIZE, 4).getUint32(0, true);
  return stored === bootRomCrc32(image.subarray(0, BOOT2_CODE_SIZE));
}
