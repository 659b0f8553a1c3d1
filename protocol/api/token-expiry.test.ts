import { describe, expect, it } from 'vitest';
import { expiresInField, parseDuration } from './token-expiry.ts';

describe('token expiry durations', () => {
  it.each([
    ['90m', 90 * 60_000],
    ['12h', 12 * 3_600_000],
    ['30d', 30 * 86_400_000],
    [' 1d ', 86_400_000],
    ['3650d', 3650 * 86_400_000],
  ])('reads %j', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '30', 'd', '0d', '05d', '-5m', '1.5h', '2w', '1y', '30 d', '3651d', '87601h', '30D'])(
    'refuses %j',
    (text) => {
      expect(parseDuration(text)).toBeNull();
      expect(expiresInField.safeParse(text).success).toBe(false);
    },
  );

  it('leaves the expiry out for a token that does not expire', () => {
    expect(expiresInField.safeParse(undefined).success).toBe(true);
  });
});
