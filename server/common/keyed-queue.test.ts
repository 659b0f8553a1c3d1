import { describe, expect, it } from 'vitest';
import { KeyedQueue } from './keyed-queue.ts';

/** Work that finishes when the test says so, recording when it started and ended. */
function controlled(log: string[], name: string) {
  let finish = () => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  return {
    work: async () => {
      log.push(`start ${name}`);
      await finished;
      log.push(`end ${name}`);
    },
    finish: () => finish(),
  };
}

describe('KeyedQueue', () => {
  it("runs one key's work in order, one at a time, while other keys run beside it", async () => {
    const log: string[] = [];
    const queue = new KeyedQueue(4);
    const a1 = controlled(log, 'a1');
    const a2 = controlled(log, 'a2');
    const b1 = controlled(log, 'b1');
    queue.push('a', a1.work);
    queue.push('a', a2.work);
    queue.push('b', b1.work);
    await Promise.resolve();
    expect(log).toEqual(['start a1', 'start b1']);
    b1.finish();
    a1.finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect(log).toEqual(['start a1', 'start b1', 'end b1', 'end a1', 'start a2']);
    a2.finish();
    await queue.idle();
    expect(log.at(-1)).toBe('end a2');
    expect(queue.size).toBe(0);
  });

  it('runs at most `concurrency` pieces at once, the keys in the order they came', async () => {
    const log: string[] = [];
    const queue = new KeyedQueue(2);
    const pieces = ['a', 'b', 'c', 'd'].map((key) => ({ key, ...controlled(log, key) }));
    for (const piece of pieces) queue.push(piece.key, piece.work);
    await Promise.resolve();
    expect(log).toEqual(['start a', 'start b']);
    expect(queue.size).toBe(4);
    pieces[1]!.finish();
    await new Promise((resolve) => setImmediate(resolve));
    expect(log).toEqual(['start a', 'start b', 'end b', 'start c']);
    for (const piece of pieces) piece.finish();
    await queue.idle();
    expect(log.filter((line) => line.startsWith('end'))).toHaveLength(4);
  });

  it('is idle at once when empty, and goes on after work that rejected', async () => {
    const queue = new KeyedQueue(1);
    await queue.idle();
    const ran: string[] = [];
    queue.push('a', () => Promise.reject(new Error('its own failure')));
    queue.push('a', async () => {
      ran.push('after');
    });
    await queue.idle();
    expect(ran).toEqual(['after']);
  });
});
