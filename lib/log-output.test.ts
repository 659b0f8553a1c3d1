import { describe, expect, it } from 'vitest';
import { isLogLevel, logFormatFor } from './log-output.ts';

describe('log output', () => {
  it('writes pretty lines only to a terminal and JSON to pipes and files', () => {
    expect(logFormatFor({ isTTY: true })).toBe('pretty');
    expect(logFormatFor({ isTTY: false })).toBe('json');
    expect(logFormatFor({})).toBe('json');
  });

  it("accepts pino's levels and silent, nothing else", () => {
    expect(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].every(isLogLevel)).toBe(true);
    expect(isLogLevel('loud')).toBe(false);
    expect(isLogLevel('INFO')).toBe(false);
  });
});
