import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { loadHexFile, parseIntelHex } from './intel-hex.ts';

/** One record with a correct checksum. */
function record(type: number, address: number, data: number[] = []): string {
  const bytes = [data.length, address >> 8, address & 0xff, type, ...data];
  const checksum = (0x100 - (bytes.reduce((sum, value) => sum + value, 0) & 0xff)) & 0xff;
  return `:${[...bytes, checksum].map((value) => value.toString(16).toUpperCase().padStart(2, '0')).join('')}`;
}

const EOF = ':00000001FF';

describe('parseIntelHex', () => {
  it('reads data records into one image from address 0, gaps erased to 0xFF', () => {
    const image = parseIntelHex(
      [record(0, 0x0000, [0x0c, 0x94, 0x5c, 0x00]), record(0, 0x0008, [0x01, 0x02]), EOF, ''].join('\r\n'),
    );
    expect([...image.bytes]).toEqual([0x0c, 0x94, 0x5c, 0x00, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]);
    expect(image.dataBytes).toBe(6);
  });

  it('applies extended linear and extended segment addresses, and ignores start addresses', () => {
    const linear = parseIntelHex(
      [record(4, 0, [0x00, 0x01]), record(0, 0x0002, [0xaa]), record(5, 0, [0, 0, 0, 0]), EOF].join('\n'),
    );
    expect(linear.bytes.length).toBe(0x10003);
    expect(linear.bytes[0x10002]).toBe(0xaa);
    const segment = parseIntelHex(
      [record(2, 0, [0x10, 0x00]), record(0, 0x0001, [0xbb]), record(3, 0, [0, 0, 0, 0]), EOF].join('\n'),
    );
    expect(segment.bytes[0x10001]).toBe(0xbb);
  });

  it.each([
    [
      'a line without the start code',
      `${record(0, 0, [1])}\n0100000001FE\n${EOF}`,
      'line 2: does not start with ":"',
    ],
    [
      'a character that is not hex',
      `:01000000Z1FE\n${EOF}`,
      'line 1: holds characters that are not hex digits',
    ],
    ['an odd number of digits', `:0100000001F\n${EOF}`, 'line 1: has an odd number of hex digits'],
    [
      'a record too short to hold a header',
      `:0000\n${EOF}`,
      'line 1: is too short for a record (2 bytes, at least 5 needed)',
    ],
    [
      'a byte count that disagrees with the record',
      `:0200000001F1\n${EOF}`,
      'line 1: byte count says 2 data bytes but the record holds 1',
    ],
    ['a wrong checksum', `:0100000001FF\n${EOF}`, 'line 1: checksum is 0xFF but the record adds up to 0xFE'],
    ['an unknown record type', `${record(6, 0, [])}\n${EOF}`, 'line 1: unknown record type 0x06'],
    [
      'an end-of-file record holding data',
      record(1, 0, [1]),
      'line 1: an end-of-file record must hold 0 bytes, not 1',
    ],
    [
      'an extended address of the wrong length',
      `${record(4, 0, [1])}\n${EOF}`,
      'line 1: an extended linear address record must hold 2 bytes, not 1',
    ],
    [
      'data running past its 64 KiB segment',
      `${record(0, 0xffff, [1, 2])}\n${EOF}`,
      'line 1: data at offset 0xFFFF runs past the end of its 64 KiB segment',
    ],
    [
      'data after the end-of-file record',
      `${EOF}\n${record(0, 0, [1])}`,
      'line 2: data after the end-of-file record on line 1',
    ],
    [
      'two records for one address',
      `${record(0, 0, [1, 2])}\n${record(0, 1, [3])}\n${EOF}`,
      'line 2: address 0x0001 was already set by line 1',
    ],
  ])('names the line and the fault for %s', (_name, text, fault) => {
    expect(() => parseIntelHex(text, 'blink.hex')).toThrowError(
      expect.objectContaining({
        code: 'hex-corrupt',
        message: `blink.hex ${fault}; rebuild the firmware or fetch the file again`,
      }),
    );
  });

  it('says a file cut short has no end-of-file record', () => {
    expect(() => parseIntelHex(record(0, 0, [1]), 'blink.hex')).toThrowError(
      expect.objectContaining({
        code: 'hex-corrupt',
        message:
          'blink.hex has no end-of-file record: it was cut short; rebuild the firmware or fetch the file again',
      }),
    );
  });
});

describe('loadHexFile', () => {
  it('refuses a file bigger than the board’s application flash, naming both sizes', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'boardfleet-hex-'));
    const path = join(directory, 'huge.hex');
    // One byte into the Uno's optiboot section (0x7E00).
    await writeFile(path, `${record(0, 0x7e00, [0x00])}\n${EOF}\n`);
    await expect(loadHexFile(path, getBoard('uno'))).rejects.toMatchObject({
      code: 'hex-too-big',
      message: `${path} needs 32257 bytes of flash but Arduino Uno has 32256 for sketches (32768 minus 512 for the bootloader); make the sketch smaller or pick a bigger board`,
    });
    const fits = await loadHexFile(path, getBoard('mega2560'));
    expect(fits.bytes.length).toBe(0x7e01);
  });
});
