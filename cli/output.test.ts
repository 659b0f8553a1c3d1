import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, formatNumber, formatPercent, formatTime } from './output.ts';

describe('numbers as people read them', () => {
  it.each([
    [0.6198401765980229, '0.62'],
    [1.5, '1.50'],
    [0, '0.00'],
    [12.345, '12.35'],
  ])('formats the load %s as %s', (value, expected) => {
    expect(formatNumber(value)).toBe(expected);
  });

  it.each([
    [40, '40%'],
    [33.33333, '33.3%'],
    [99.96, '100%'],
    [0.04, '0%'],
  ])('formats %s percent as %s', (value, expected) => {
    expect(formatPercent(value)).toBe(expected);
  });

  it.each([
    [0, '0s'],
    [44.6, '45s'],
    [725, '12m 5s'],
    [3600, '1h 0m'],
    [12_000, '3h 20m'],
    [352_800, '4d 2h'],
  ])('formats %s seconds as %s', (value, expected) => {
    expect(formatDuration(value)).toBe(expected);
  });

  it('formats bytes with one decimal past a KiB', () => {
    expect(formatBytes(1_000_000)).toBe('976.6 KiB');
  });

  it('formats a moment in UTC to the minute, or to the second', () => {
    const at = Date.UTC(2026, 11, 5, 14, 3, 27, 900);
    expect([formatTime(at), formatTime(at, 'seconds'), formatTime(null)]).toEqual([
      '2026-12-05 14:03',
      '2026-12-05 14:03:27',
      '-',
    ]);
  });
});
