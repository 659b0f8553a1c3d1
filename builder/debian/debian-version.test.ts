import { describe, expect, it } from 'vitest';
import { compareDebianVersions, parseDebianVersion, satisfiesVersion } from './debian-version.ts';

describe('compareDebianVersions', () => {
  // [a, b, expected sign of compare(a, b)]; each row also runs reversed.
  it.each([
    ['1.0', '1.0', 0],
    ['1.0', '1.0-0', 0],
    ['0:1.0', '1.0', 0],
    ['1.0', '1.1', -1],
    ['1.2', '1.10', -1],
    ['1.02', '1.2', 0],
    ['1.0-1', '1.0-2', -1],
    ['1.0-2', '1.0-10', -1],
    ['1:0.1', '2.0', 1],
    ['1:1.0', '2:0.1', -1],
    ['1.0~rc1', '1.0', -1],
    ['1.0~rc1', '1.0~rc2', -1],
    ['1.0~~', '1.0~', -1],
    ['1.0~~a', '1.0~~', 1],
    ['1.0~', '1.0', -1],
    ['1.0', '1.0a', -1],
    ['1.0a', '1.0+', -1],
    ['1.0+', '1.0.', -1],
    ['1.0.', '1.0~', 1],
    ['1.0+dfsg', '1.0', 1],
    ['2.36-9+deb12u4', '2.36-9+deb12u10', -1],
    ['2.36-9+deb12u9', '2.36-9', 1],
    ['12.2.0-14+deb12u1', '12.2.0-14', 1],
    ['4.5', '12.2.0-14+deb12u1', -1],
    ['1:1.35.0-4+deb12u1+b1', '1:1.35.0-4+deb12u1', 1],
    ['4.3~', '4.3', -1],
    ['0.120+deb8u2', '0.120', 1],
    ['6.1.0-50', '6.1.0-9', 1],
    ['a', 'b', -1],
    ['1.0-1', '1.0-1~bpo1', 1],
    ['10', '9', 1],
    ['1.0-1.1', '1.0-1', 1],
    ['3.0-2ubuntu1', '3.0-2', 1],
  ] as const)('compares %s with %s as %i', (a, b, expected) => {
    expect(Math.sign(compareDebianVersions(a, b))).toBe(expected);
    expect(Math.sign(compareDebianVersions(b, a))).toBe(-expected || 0);
  });

  it('sorts a list the way dpkg does', () => {
    const versions = ['1.0', '1.0~rc1', '1:0.5', '1.0-1', '1.0+b1', '0.9', '1.0~beta'];
    expect([...versions].sort(compareDebianVersions)).toEqual([
      '0.9',
      '1.0~beta',
      '1.0~rc1',
      '1.0',
      '1.0-1',
      '1.0+b1',
      '1:0.5',
    ]);
  });
});

describe('parseDebianVersion', () => {
  it('splits epoch, upstream and revision at the first colon and the last hyphen', () => {
    expect(parseDebianVersion('1:2.3-4-5')).toEqual({ epoch: 1, upstream: '2.3-4', revision: '5' });
    expect(parseDebianVersion('6.1.176')).toEqual({ epoch: 0, upstream: '6.1.176', revision: '' });
  });

  it.each([
    ['', 'it is empty'],
    ['a:1.0', 'the epoch "a" is not a number'],
    ['1:', 'the upstream version is empty'],
    ['1.0-', 'the revision after the last "-" is empty'],
    ['1.0 beta', 'it contains white space'],
    ['1.0_1', 'the upstream version "1.0_1" has a bad character'],
  ])('refuses %j: %s', (version, why) => {
    expect(() => parseDebianVersion(version)).toThrow(`"${version}" is not a Debian version: ${why}`);
  });
});

describe('satisfiesVersion', () => {
  it.each([
    ['2.36-9+deb12u9', '>=', '2.36', true],
    ['2.36-9+deb12u9', '>=', '2.37', false],
    ['2.36-9', '<<', '2.36-9+deb12u1', true],
    ['2.36-9', '<<', '2.36-9', false],
    ['2.36-9', '<=', '2.36-9', true],
    ['12.2.0-14+deb12u1', '=', '12.2.0-14+deb12u1', true],
    ['12.2.0-14+deb12u1', '=', '12.2.0-14', false],
    ['1.1', '>>', '1.0', true],
    ['1.0', '>>', '1.0', false],
  ] as const)('%s %s %s is %s', (version, relation, constraint, expected) => {
    expect(satisfiesVersion(version, relation, constraint)).toBe(expected);
  });
});
