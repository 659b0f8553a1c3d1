import { describe, expect, it } from 'vitest';
import { parseMetadataFileName, toWholeSecond, tufTime, tufTimeSchema } from './metadata.ts';

describe('TUF metadata', () => {
  it('writes times in UTC to the second, as the specification asks', () => {
    expect(tufTime(Date.UTC(2027, 0, 31, 12, 0, 0, 999))).toBe('2027-01-31T12:00:00Z');
    expect(toWholeSecond(1_999)).toBe(1_000);
    expect(tufTimeSchema.safeParse('2027-01-31T12:00:00Z').success).toBe(true);
    expect(tufTimeSchema.safeParse('2027-01-31T12:00:00.000Z').success).toBe(false);
    expect(tufTimeSchema.safeParse('2027-01-31T12:00:00+01:00').success).toBe(false);
  });

  it.each([
    ['root.json', { role: 'root', version: null }],
    ['3.root.json', { role: 'root', version: 3 }],
    ['timestamp.json', { role: 'timestamp', version: null }],
    ['snapshot.json', { role: 'snapshot', version: null }],
    ['12.snapshot.json', { role: 'snapshot', version: 12 }],
    ['7.targets.json', { role: 'targets', version: 7 }],
    ['2.timestamp.json', null],
    ['0.root.json', null],
    ['01.root.json', null],
    ['mirrors.json', null],
    ['x', null],
    ['../root.json', null],
  ])('reads the file name %s', (name, expected) => {
    expect(parseMetadataFileName(name)).toEqual(expected);
  });
});
