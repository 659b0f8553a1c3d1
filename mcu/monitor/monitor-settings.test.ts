import { describe, expect, it } from 'vitest';
import {
  formatClock,
  formatSeconds,
  parseMonitorSettings,
  reconnectDelayMs,
  timestamper,
} from './monitor-settings.ts';

const DEFAULTS = { baud: '9600', eol: 'lf', reconnectTimeout: '60' };

describe('parseMonitorSettings', () => {
  it.each([
    {
      flags: DEFAULTS,
      settings: { baudRate: 9600, lineEnding: 'lf', timestamps: false, reconnectTimeoutMs: 60_000 },
    },
    {
      flags: { baud: '115200', eol: 'crlf', timestamps: true, reconnectTimeout: '0.5' },
      settings: { baudRate: 115200, lineEnding: 'crlf', timestamps: true, reconnectTimeoutMs: 500 },
    },
    { flags: { ...DEFAULTS, eol: 'none' }, settings: { lineEnding: 'none' } },
  ])('reads $flags', ({ flags, settings }) => {
    expect(parseMonitorSettings(flags)).toMatchObject(settings);
  });

  it.each([
    {
      flags: { ...DEFAULTS, baud: 'fast' },
      message: '--baud must be a baud rate such as 9600 or 115200, not "fast"',
    },
    {
      flags: { ...DEFAULTS, baud: '0' },
      message: '--baud must be a baud rate such as 9600 or 115200, not "0"',
    },
    { flags: { ...DEFAULTS, eol: 'cr' }, message: '--eol must be lf, crlf or none, not "cr"' },
    { flags: { ...DEFAULTS, eol: 'toString' }, message: '--eol must be lf, crlf or none, not "toString"' },
    {
      flags: { ...DEFAULTS, reconnectTimeout: '-1' },
      message: '--reconnect-timeout must be a number of seconds, not "-1"',
    },
  ])('refuses $flags in one line', ({ flags, message }) => {
    expect(() => parseMonitorSettings(flags)).toThrow(
      expect.objectContaining({ code: 'invalid-option', message }),
    );
  });
});

describe('timestamper', () => {
  const text = (bytes: Uint8Array) => Buffer.from(bytes).toString();
  const bytes = (value: string) => Buffer.from(value);

  it('prefixes each line with the time its first byte arrived, across reads', () => {
    const times = [
      new Date(2026, 0, 1, 9, 5, 7, 42),
      new Date(2026, 0, 1, 9, 5, 7, 250),
      new Date(2026, 0, 1, 13, 0, 0, 1),
    ];
    const stamp = timestamper(() => times.shift()!);
    expect(text(stamp(bytes('echo ready\r\ntick')))).toBe(
      '09:05:07.042 -> echo ready\r\n09:05:07.042 -> tick',
    );
    expect(text(stamp(bytes(' 0\r\n')))).toBe(' 0\r\n');
    expect(text(stamp(bytes('tick 1\r\n\n')))).toBe('13:00:00.001 -> tick 1\r\n13:00:00.001 -> \n');
  });

  it('leaves bytes that are not text as they are', () => {
    const stamp = timestamper(() => new Date(2026, 0, 1, 0, 0, 0, 0));
    expect([...stamp(new Uint8Array([0xff, 0x0a, 0x00]))]).toEqual([
      ...Buffer.from('00:00:00.000 -> '),
      0xff,
      0x0a,
      ...Buffer.from('00:00:00.000 -> '),
      0x00,
    ]);
    expect(stamp(new Uint8Array(0))).toHaveLength(0);
  });
});

describe('small formats and the reconnect backoff', () => {
  it.each([
    [new Date(2026, 5, 1, 0, 0, 0, 0), '00:00:00.000'],
    [new Date(2026, 5, 1, 23, 59, 59, 999), '23:59:59.999'],
  ])('formatClock(%s) is %s', (time, clock) => expect(formatClock(time)).toBe(clock));

  it.each([
    [60_000, '60 s'],
    [1_500, '1.5 s'],
    [2_000, '2 s'],
  ])('formatSeconds(%i) is %s', (milliseconds, said) => expect(formatSeconds(milliseconds)).toBe(said));

  it('looks again quickly at first, then once a second', () => {
    expect([0, 1, 2, 3, 4, 5, 10].map(reconnectDelayMs)).toEqual([50, 100, 200, 400, 800, 1000, 1000]);
  });
});
