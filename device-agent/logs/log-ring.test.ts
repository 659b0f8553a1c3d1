import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LogRing } from './log-ring.ts';

const dirs: string[] = [];
const rings: LogRing[] = [];

function openRing(
  dir: string,
  options: { capBytes?: number; memoryLines?: number; now?: () => number } = {},
) {
  const ring = new LogRing({ dir, ...options });
  rings.push(ring);
  return ring;
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'log-ring-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const ring of rings.splice(0)) ring.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const texts = (ring: LogRing, after = -1) => ring.read(after, null, 10_000).lines.map((line) => line.text);

describe('LogRing', () => {
  it('numbers lines in order and reads them back after a sequence number', () => {
    const ring = openRing(tempDir());
    for (let n = 0; n < 5; n++) ring.append('app:demo', 'stdout', `line ${n}`);
    const { lines, through } = ring.read(1, null, 100);
    expect(lines.map((line) => [line.seq, line.text])).toEqual([
      [2, 'line 2'],
      [3, 'line 3'],
      [4, 'line 4'],
    ]);
    expect(through).toBe(4);
  });

  it('continues the sequence after a restart, from disk as well as from memory', () => {
    const dir = tempDir();
    const first = openRing(dir);
    for (let n = 0; n < 3; n++) first.append('agent', 'stdout', `before ${n}`);
    first.close();
    const second = openRing(dir, { memoryLines: 1 });
    second.append('agent', 'stderr', 'after');
    expect(second.read(-1, null, 100).lines.map((line) => [line.seq, line.text, line.stream])).toEqual([
      [0, 'before 0', 'stdout'],
      [1, 'before 1', 'stdout'],
      [2, 'before 2', 'stdout'],
      [3, 'after', 'stderr'],
    ]);
  });

  it('skips a line torn by a crash and carries on after the last whole one', () => {
    const dir = tempDir();
    const ring = openRing(dir);
    ring.append('app:demo', 'stdout', 'whole');
    ring.close();
    const [segment] = readdirSync(dir);
    appendFileSync(join(dir, segment as string), '{"seq":1,"at":12,"sour');
    const reopened = openRing(dir);
    reopened.append('app:demo', 'stdout', 'next');
    expect(reopened.read(-1, null, 100).lines.map((line) => [line.seq, line.text])).toEqual([
      [0, 'whole'],
      [1, 'next'],
    ]);
  });

  it('stays within its cap by dropping the oldest segments, and the sequence goes on', () => {
    const dir = tempDir();
    const ring = openRing(dir, { capBytes: 64 * 1024, memoryLines: 10 });
    for (let n = 0; n < 2000; n++) ring.append('app:demo', 'stdout', `line ${n} ${'x'.repeat(100)}`);
    const total = readdirSync(dir).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0);
    expect(total).toBeLessThanOrEqual(64 * 1024);
    const kept = ring.read(-1, null, 10_000).lines;
    expect(kept.at(-1)?.seq).toBe(1999);
    expect(kept[0]?.seq).toBeGreaterThan(0);
    // No gaps in what is kept.
    expect(kept.every((line, index) => index === 0 || line.seq === (kept[index - 1]?.seq ?? 0) + 1)).toBe(
      true,
    );
    ring.close();
    const reopened = openRing(dir);
    reopened.append('agent', 'stdout', 'after restart');
    expect(reopened.read(1999, null, 10).lines.map((line) => line.seq)).toEqual([2000]);
  });

  it('filters by source, leaves attached boards out unless named, and reports how far it read', () => {
    const ring = openRing(tempDir());
    ring.append('app:a', 'stdout', 'a1');
    ring.append('board:/dev/ttyACM0', 'stdout', 'serial');
    ring.append('agent', 'stdout', 'agent');
    ring.append('app:b', 'stdout', 'b1');
    expect(ring.read(-1, null, 100).lines.map((line) => line.text)).toEqual(['a1', 'agent', 'b1']);
    const onlyA = ring.read(-1, new Set(['app:a']), 100);
    expect(onlyA.lines.map((line) => line.text)).toEqual(['a1']);
    expect(onlyA.through).toBe(3);
    expect(ring.read(-1, new Set(['board:/dev/ttyACM0']), 100).lines.map((line) => line.text)).toEqual([
      'serial',
    ]);
  });

  it('finds where to start for the newest N lines of a source and for the lines since a time', () => {
    let clock = 1_000;
    const ring = openRing(tempDir(), { memoryLines: 2, now: () => clock });
    for (let n = 0; n < 10; n++) {
      ring.append(n % 2 === 0 ? 'app:even' : 'agent', 'stdout', `line ${n}`);
      clock += 100;
    }
    const even = new Set(['app:even'] as const);
    const after = ring.afterSeqForTail(2, even);
    expect(ring.read(after, even, 100).lines.map((line) => line.text)).toEqual(['line 6', 'line 8']);
    expect(texts(ring, ring.afterSeqSince(1_750))).toEqual(['line 8', 'line 9']);
    expect(texts(ring, ring.afterSeqSince(0))).toHaveLength(10);
    expect(texts(ring, ring.afterSeqSince(5_000))).toEqual([]);
  });

  it('cuts long lines and splits text with newlines into lines', () => {
    const ring = openRing(tempDir());
    ring.append('agent', 'stdout', `${'y'.repeat(5000)}\nsecond\r`);
    const lines = ring.read(-1, null, 10).lines;
    expect(lines.map((line) => line.text.length)).toEqual([4096, 6]);
  });

  it('pages through a backlog on disk without repeating a line', () => {
    const ring = openRing(tempDir(), { memoryLines: 5 });
    for (let n = 0; n < 1000; n++) ring.append('app:demo', 'stdout', `line ${n}`);
    const seen: number[] = [];
    let after = -1;
    for (;;) {
      const page = ring.read(after, null, 256);
      if (page.lines.length === 0) break;
      seen.push(...page.lines.map((line) => line.seq));
      after = page.through;
    }
    expect(seen).toEqual([...Array(1000).keys()]);
  });
});
