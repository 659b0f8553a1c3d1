import { describe, expect, it } from 'vitest';
import { sinceTime } from './audit.command.ts';

const NOW = Date.UTC(2026, 11, 10, 12, 0, 0);

describe('the time `audit --since` reads', () => {
  it.each([
    ['30m', NOW - 30 * 60_000],
    ['2h', NOW - 2 * 3_600_000],
    ['7d', NOW - 7 * 86_400_000],
    ['2026-12-01', Date.UTC(2026, 11, 1)],
    ['2026-12-01T14:00', Date.UTC(2026, 11, 1, 14)],
    ['2026-12-01 14:03:27', Date.UTC(2026, 11, 1, 14, 3, 27)],
    ['2026-12-01T14:00:00.250Z', Date.UTC(2026, 11, 1, 14, 0, 0, 250)],
    ['2026-12-01T14:00+01:00', Date.UTC(2026, 11, 1, 13)],
    [' 2026-12-01 ', Date.UTC(2026, 11, 1)],
  ])('reads %j', (text, expected) => {
    expect(sinceTime(text, NOW)).toBe(expected);
  });

  it.each([
    'yesterday',
    '',
    '2w',
    '0d',
    '2026-13-01',
    '2026-12-01T25:00',
    '12/01/2026',
    '1969-12-31',
    '1764547200000',
  ])('refuses %j, saying what it takes', (text) => {
    expect(() => sinceTime(text, NOW)).toThrow(
      /--since .*: use a duration back from now \(30m, 2h, 7d\) or an ISO date/,
    );
  });
});
