import { describe, expect, it } from 'vitest';
import { urlHostOf } from './request-host.ts';

describe('urlHostOf', () => {
  it.each([
    ['pi-fleet.example:8443', 'pi-fleet.example'],
    ['192.168.1.20:8080', '192.168.1.20'],
    ['[fe80::1]:8443', '[fe80::1]'],
    [undefined, 'fallback.example'],
    ['', 'fallback.example'],
    ['bad host/with space', 'fallback.example'],
  ])('%s → %s', (header, expected) => {
    expect(urlHostOf(header, 'fallback.example')).toBe(expected);
  });

  it('brackets an IPv6 fallback', () => {
    expect(urlHostOf(undefined, '::1')).toBe('[::1]');
  });
});
