import { describe, expect, it } from 'vitest';
import { BatchedWriter } from './batched-writer.ts';

describe('BatchedWriter', () => {
  it('writes in arrival order, at most maxRows a batch, one batch at a time', async () => {
    const batches: number[][] = [];
    let writing = 0;
    const writer = new BatchedWriter<number>({
      maxRows: 3,
      intervalMs: 60_000,
      write: async (batch) => {
        expect(++writing).toBe(1);
        await new Promise((resolve) => setImmediate(resolve));
        batches.push(batch);
        writing--;
      },
    });
    for (let n = 1; n <= 7; n++) writer.push(n);
    expect(writer.size).toBe(7);
    await writer.flush();
    expect(batches).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    expect(writer.size).toBe(0);
  });

  it('writes a batch smaller than maxRows once the interval has passed', async () => {
    let written: string[] | null = null;
    const stored = new Promise<void>((resolve) => {
      const writer = new BatchedWriter<string>({
        maxRows: 100,
        intervalMs: 10,
        write: async (batch) => {
          written = batch;
          resolve();
        },
      });
      writer.push('a');
      writer.push('b');
    });
    await stored;
    expect(written).toEqual(['a', 'b']);
  });

  it('with no interval, writes at once and batches only what arrives during a write', async () => {
    const batches: string[][] = [];
    let release = () => {};
    const writer = new BatchedWriter<string>({
      maxRows: 100,
      intervalMs: 0,
      write: async (batch) => {
        batches.push(batch);
        if (batches.length === 1) await new Promise<void>((resolve) => (release = resolve));
      },
    });
    writer.push('a');
    expect(batches).toEqual([['a']]);
    writer.push('b');
    writer.push('c');
    release();
    await writer.flush();
    expect(batches).toEqual([['a'], ['b', 'c']]);
  });
});
