import { describe, expect, it } from 'vitest';
import { isLogFormat, isLogLevel, logFormatFor } from './log-output.ts';

describe('log output', () => {
  it('writes pretty lines only to a terminal and JSON to pipes and files', () => {
    expect(logFormatFor({ isTTY: true })).toBe('pretty');
    expect(logFormatFor({ isTTY: false })).toBe('json');
    expect(logFormatFor({})).toBe('json');
  });

  it('writes what LOG_FORMAT chooses whatever the stream is', () => {
    expect(logFormatFor({ isTTY: true }, 'json')).toBe('json');
    expect(logFormatFor({ isTTY: false }, 'pretty')).toBe('pretty');
    expect(isLogFormat('json') && isLogFormat('pretty')).toBe(true);
    expect(isLogFormat('text')).toBe(false);
  });

  it("accepts pino's levels and silent, nothing else", () => {
    expect(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].every(isLogLevel)).toBe(true);
    expect(isLogLevel('loud')).toBe(false);
    expect(isLogLevel('INFO')).toBe(false);
  });
});
