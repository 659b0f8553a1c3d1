import { BoardfleetError } from '../protocol/errors.ts';

/**
 * Microsoft's UF2 (USB Flashing Format, https://github.com/microsoft/uf2): a file of independent
 * 512-byte blocks, each carrying its flash address, so a boot ROM's USB drive can program every
 * block as it arrives, whatever order the host writes it in.
 *
 * A block, all fields little-endian 32-bit words:
 *   0 magic "UF2\n" (0x0A324655) · 4 magic 0x9E5D5157 · 8 flags · 12 target address ·
 *   16 payload size · 20 block number · 24 block count · 28 family id (or file size) ·
 *   32..507 payload (476 bytes at most, the rest zero) · 508 magic 0x0AB16F30
 */
export const UF2_BLOCK_SIZE = 512;

const MAGIC_START_0 = 0x0a324655;
const MAGIC_START_1 = 0x9e5d5157;
const MAGIC_END = 0x0ab16f30;
const HEADER_SIZE = 32;
const MAX_PAYLOAD_SIZE = 476;

/** The flags a block may carry. */
export const Uf2Flag = {
  /** Not for the main flash (comments, debug data): a boot ROM skips it. */
  notMainFlash: 0x0000_0001,
  /** The block is part of a file container, not a flash image. */
  fileContainer: 0x0000_1000,
  /** Word 28 is a family id rather than a file size. */
  familyIdPresent: 0x0000_2000,
  md5ChecksumPresent: 0x0000_4000,
  extensionTagsPresent: 0x0000_8000,
} as const;

/** What one chip's boot ROM accepts: its family id and the flash it writes. */
export interface Uf2Target {
  familyId: number;
  /** The flash's first address in the chip's address space. */
  flashAddress: number;
  flashSize: number;
  /** Bytes per block: the unit the boot ROM programs (256 on the RP2040). */
  payloadSize: number;
}

/** The UF2 target of a board of the catalogue (a `uf2` family board file). */
export function uf2TargetOf(board: {
  uf2: { familyId: number };
  flash: { address: number; size: number; pageSize: number };
}): Uf2Target {
  return {
    familyId: board.uf2.familyId,
    flashAddress: board.flash.address,
    flashSize: board.flash.size,
    payloadSize: board.flash.pageSize,
  };
}

/**
 * Writes a flash image that starts at `address` (the flash's first byte unless said otherwise)
 * as UF2 blocks for `target`. The last block's payload is padded with 0xFF, as erased flash
 * reads. An image that does not fit the flash, or starts off a payload boundary, is refused.
 */
export function encodeUf2(image: Uint8Array, target: Uf2Target, address = target.flashAddress): Uint8Array {
  const { payloadSize, flashAddress, flashSize } = target;
  if (payloadSize <= 0 || payloadSize > MAX_PAYLOAD_SIZE || payloadSize % 4 !== 0) {
    throw new BoardfleetError(
      'invalid-arguments',
      `a UF2 payload of ${payloadSize} bytes is not possible (a multiple of 4, at most ${MAX_PAYLOAD_SIZE})`,
    );
  }
  if (image.length === 0) throw new BoardfleetError('invalid-arguments', 'the firmware image is empty');
  if (address < flashAddress) {
    throw new BoardfleetError(
      'invalid-arguments',
      `an image at ${hex(address)} starts before the flash, which starts at ${hex(flashAddress)}`,
    );
  }
  if ((address - flashAddress) % payloadSize !== 0) {
    throw new BoardfleetError(
      'invalid-arguments',
      `an image at ${hex(address)} does not start on a ${payloadSize}-byte boundary of the flash at ${hex(flashAddress)}`,
    );
  }
  const end = address + image.length;
  if (end > flashAddress + flashSize) {
    throw new BoardfleetError(
      'firmware-too-big',
      `the firmware image (${image.length} bytes from ${hex(address)}) runs ${end - (flashAddress + flashSize)} bytes past the end of the ${flashSize}-byte flash`,
    );
  }
  const blockCount = Math.ceil(image.length / payloadSize);
  const file = new Uint8Array(blockCount * UF2_BLOCK_SIZE);
  const view = new DataView(file.buffer);
  for (let block = 0; block < blockCount; block++) {
    const offset = block * UF2_BLOCK_SIZE;
    const words = [
      MAGIC_START_0,
      MAGIC_START_1,
      Uf2Flag.familyIdPresent,
      address + block * payloadSize,
      payloadSize,
      block,
      blockCount,
      target.familyId,
    ];
    words.forEach((word, index) => view.setUint32(offset + index * 4, word >>> 0, true));
    const payload = image.subarray(block * payloadSize, (block + 1) * payloadSize);
    file.fill(0xff, offset + HEADER_SIZE, offset + HEADER_SIZE + payloadSize);
    file.set(payload, offset + HEADER_SIZE);
    view.setUint32(offset + UF2_BLOCK_SIZE - 4, MAGIC_END, true);
  }
  return file;
}

/** A UF2 file read back: the flash image its blocks for the target make. */
export type Uf2DecodeResult =
  | {
      ok: true;
      /** Where the image starts in the address space. */
      address: number;
      /** From the lowest block to the end of the highest; bytes no block sets are 0xFF. */
      bytes: Uint8Array;
      /** Blocks for the target (others — other families, not main flash — are skipped). */
      blockCount: number;
    }
  | {
      ok: false;
      reason: 'truncated' | 'bad-magic' | 'wrong-family' | 'bad-block' | 'out-of-range' | 'incomplete';
      detail: string;
    };

/**
 * Reads a UF2 file as `target`'s boot ROM would, but stricter: every block must be well formed,
 * and the blocks for the target must all be there, each once, inside its flash. Blocks of other
 * families (a file may hold several) and blocks not meant for the main flash are skipped.
 * Never throws: the caller turns the reason into its own error.
 */
export function decodeUf2(file: Uint8Array, target: Uf2Target): Uf2DecodeResult {
  const fail = (reason: Extract<Uf2DecodeResult, { ok: false }>['reason'], detail: string) =>
    ({ ok: false, reason, detail }) as const;
  if (file.length === 0 || file.length % UF2_BLOCK_SIZE !== 0) {
    return fail(
      'truncated',
      `${file.length} bytes is not a whole number of ${UF2_BLOCK_SIZE}-byte blocks: the file was cut short or is not UF2`,
    );
  }
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const ours: Array<{ index: number; address: number; payload: Uint8Array }> = [];
  let declaredCount: number | undefined;
  const seenNumbers = new Set<number>();
  let otherFamilies = 0;
  for (let index = 0; index * UF2_BLOCK_SIZE < file.length; index++) {
    const offset = index * UF2_BLOCK_SIZE;
    const word = (at: number) => view.getUint32(offset + at, true);
    for (const [at, expected] of [
      [0, MAGIC_START_0],
      [4, MAGIC_START_1],
      [UF2_BLOCK_SIZE - 4, MAGIC_END],
    ] as const) {
      if (word(at) !== expected) {
        return fail(
          'bad-magic',
          `block ${index}: the word at byte ${at} is ${hex(word(at))}, not the UF2 magic ${hex(expected)}`,
        );
      }
    }
    const [flags, address, payloadSize, blockNumber, blockCount, familyId] = [8, 12, 16, 20, 24, 28].map(
      word,
    ) as [number, number, number, number, number, number];
    if (payloadSize > MAX_PAYLOAD_SIZE) {
      return fail(
        'bad-block',
        `block ${index}: a payload of ${payloadSize} bytes is over the ${MAX_PAYLOAD_SIZE} a block holds`,
      );
    }
    if (blockNumber >= blockCount) {
      return fail(
        'bad-block',
        `block ${index}: block number ${blockNumber} is not below the block count ${blockCount}`,
      );
    }
    if (flags & Uf2Flag.notMainFlash) continue;
    if (!(flags & Uf2Flag.familyIdPresent) || familyId !== target.familyId) {
      otherFamilies++;
      continue;
    }
    if (flags & Uf2Flag.fileContainer) {
      return fail('bad-block', `block ${index}: a file-container block, not a flash image`);
    }
    if (payloadSize !== target.payloadSize || (address - target.flashAddress) % target.payloadSize !== 0) {
      return fail(
        'bad-block',
        `block ${index}: ${payloadSize} bytes at ${hex(address)}; the boot ROM takes ${target.payloadSize}-byte pages on ${target.payloadSize}-byte boundaries`,
      );
    }
    const flashEnd = target.flashAddress + target.flashSize;
    if (address < target.flashAddress || address + payloadSize > flashEnd) {
      return fail(
        'out-of-range',
        `block ${index}: address ${hex(address)} is outside the flash (${hex(target.flashAddress)} to ${hex(flashEnd)})`,
      );
    }
    if (declaredCount !== undefined && blockCount !== declaredCount) {
      return fail(
        'bad-block',
        `block ${index}: says the file has ${blockCount} blocks, earlier blocks said ${declaredCount}`,
      );
    }
    declaredCount = blockCount;
    if (seenNumbers.has(blockNumber))
      return fail('bad-block', `block ${index}: block number ${blockNumber} appears twice`);
    seenNumbers.add(blockNumber);
    ours.push({
      index,
      address,
      payload: file.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + payloadSize),
    });
  }
  if (ours.length === 0) {
    return fail(
      'wrong-family',
      `none of its ${file.length / UF2_BLOCK_SIZE} blocks is for family ${hex(target.familyId)}` +
        (otherFamilies > 0 ? ': it was built for another chip' : ''),
    );
  }
  if (ours.length !== declaredCount) {
    return fail(
      'incomplete',
      `${ours.length} of its ${declaredCount} blocks are there: the file was cut short`,
    );
  }
  const start = Math.min(...ours.map((block) => block.address));
  const end = Math.max(...ours.map((block) => block.address + block.payload.length));
  const bytes = new Uint8Array(end - start).fill(0xff);
  const writtenBy = new Map<number, number>();
  for (const block of ours) {
    const earlier = writtenBy.get(block.address);
    if (earlier !== undefined) {
      return fail(
        'bad-block',
        `block ${block.index}: address ${hex(block.address)} was already written by block ${earlier}`,
      );
    }
    writtenBy.set(block.address, block.index);
    bytes.set(block.payload, block.address - start);
  }
  return { ok: true, address: start, bytes, blockCount: ours.length };
}

const hex = (value: number) => `0x${(value >>> 0).toString(16).padStart(8, '0')}`;
