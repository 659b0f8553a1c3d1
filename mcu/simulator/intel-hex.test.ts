import { describe, expect, it } from 'vitest';
import { hexExtent, parseIntelHex, withoutStartAddress } from './intel-hex.ts';

// Two bytes at 0x3E000 (an extended segment record first) and a start address record.
const HEX = [':020000023000CC', ':02E000000C947E', ':040000033000E000E9', ':00000001FF'].join('\n');

describe('Intel HEX', () => {
  it('places data records at their absolute address, past 64 KB', () => {
    const records = parseIntelHex(HEX);
    expect(records).toEqual([{ address: 0x3e000, data: Buffer.from([0x0c, 0x94]) }]);
    expect(hexExtent(records)).toEqual({ start: 0x3e000, end: 0x3e002, bytes: 2 });
  });

  it('drops start-address records, which simavr cannot read', () => {
    expect(withoutStartAddress(HEX)).not.toMatch(/:04000003/);
    expect(parseIntelHex(withoutStartAddress(HEX))).toEqual(parseIntelHex(HEX));
  });

  it('names the file and line of a corrupted record', () => {
    expect(() => parseIntelHex(':02E000000C947F', 'boot.hex')).toThrow(/boot\.hex, line 1: bad checksum/);
  });
});
