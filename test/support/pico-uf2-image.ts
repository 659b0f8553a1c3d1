import { expect } from 'vitest';
import { getUf2Board } from '../../boards/board-catalogue.ts';
import { hasValidBoot2 } from '../../lib/rp2040-boot2.ts';
import { decodeUf2, uf2TargetOf } from '../../lib/uf2.ts';

const XIP_BASE = 0x1000_0000;
const BOOT2_END = XIP_BASE + 0x100;

/**
 * Checks that a UF2 is for the Pico and that what the boot ROM runs is there: one image at the
 * start of flash, a sealed stage-2 boot, then the vector table (the stack's top, then a Thumb reset
 * handler inside the image).
 */
export function expectBootablePicoUf2(uf2: Buffer): void {
  const image = decodeUf2(uf2, uf2TargetOf(getUf2Board('pico')));
  expect(image).toMatchObject({ ok: true, address: XIP_BASE });
  if (!image.ok) return;
  expect(hasValidBoot2(image.bytes)).toBe(true);
  const vectors = new DataView(image.bytes.buffer, image.bytes.byteOffset + BOOT2_END - XIP_BASE);
  expect(vectors.getUint32(0, true)).toBe(0x2004_2000);
  const reset = vectors.getUint32(4, true);
  expect(reset & 1).toBe(1);
  expect(reset).toBeGreaterThan(BOOT2_END);
  expect(reset).toBeLessThan(XIP_BASE + image.bytes.length);
}
