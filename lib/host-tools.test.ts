import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findHostTool, hostToolMissing, locateHostTool } from './host-tools.ts';

describe('host tool lookup', () => {
  let work: string;
  let first: string;
  let second: string;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'bf-host-tools-'));
    first = mkdtempSync(join(work, 'first-'));
    second = mkdtempSync(join(work, 'second-'));
    writeFileSync(join(first, 'not-executable'), '');
    for (const directory of [first, second]) {
      writeFileSync(join(directory, 'tool'), '#!/bin/sh\n');
      chmodSync(join(directory, 'tool'), 0o755);
    }
    writeFileSync(join(second, 'not-executable'), '#!/bin/sh\n');
    chmodSync(join(second, 'not-executable'), 0o755);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('finds a program in the first directory of the search path that holds it', () => {
    expect(locateHostTool('tool', [second, first].join(delimiter))).toBe(join(second, 'tool'));
    expect(locateHostTool('tool', ['', first, second].join(delimiter))).toBe(join(first, 'tool'));
  });

  it('skips a file that is there but not executable', () => {
    expect(locateHostTool('not-executable', [first, second].join(delimiter))).toBe(
      join(second, 'not-executable'),
    );
  });

  it('answers undefined when no directory holds the program, or the search path is empty', () => {
    expect(locateHostTool('absent', [first, second].join(delimiter))).toBeUndefined();
    expect(locateHostTool('tool', '')).toBeUndefined();
  });

  it('names the Debian package of a missing program, and where it looked', async () => {
    await expect(findHostTool('absent', { absent: 'absent-utils' }, first)).rejects.toMatchObject({
      code: 'tool-missing',
      message: `absent is not installed (searched ${first}). Install it with: sudo apt-get install absent-utils`,
    });
    await expect(findHostTool('tool', { tool: 'tool-utils' }, first)).resolves.toBe(join(first, 'tool'));
    expect(hostToolMissing('qemu-x', 'qemu-pkg', '', 'qemu-missing')).toMatchObject({
      code: 'qemu-missing',
      message:
        'qemu-x is not installed (searched an empty PATH). Install it with: sudo apt-get install qemu-pkg',
    });
  });
});
