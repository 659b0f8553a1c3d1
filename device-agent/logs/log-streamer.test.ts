import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogBatch, LogWatch } from '../../protocol/device-logs.ts';
import { LogRing } from './log-ring.ts';
import { LogStreamer, type Workloads } from './log-streamer.ts';

let dir: string;
let ring: LogRing;
let streamer: LogStreamer;
let published: LogBatch[];
let online: boolean;
let waiters: Array<() => void>;

function start(streamerOptions: { workloads?: Workloads; maxWatches?: number } = {}) {
  streamer = new LogStreamer({
    ring,
    publish: async (batch) => {
      if (!online) return false;
      published.push(batch);
      for (const wake of waiters.splice(0)) wake();
      return true;
    },
    workloads: () => streamerOptions.workloads ?? { apps: ['demo'], vms: ['kernel'] },
    coalesceMs: 1,
    ...(streamerOptions.maxWatches ? { maxWatches: streamerOptions.maxWatches } : {}),
  });
}

const watch = (fields: Partial<LogWatch> = {}): LogWatch => ({
  watch: 'w1',
  action: 'start',
  follow: true,
  leaseUntil: Date.now() + 30_000,
  issuedAt: Date.now(),
  ...fields,
});

/** Waits until the batches published satisfy `done` (the streamer works asynchronously). */
async function until(done: (batches: LogBatch[]) => boolean): Promise<LogBatch[]> {
  while (!done(published)) await new Promise<void>((resolve) => waiters.push(resolve));
  return published;
}

const seqs = (batches: LogBatch[]) => batches.flatMap((batch) => batch.lines.map((line) => line.seq));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'log-streamer-'));
  ring = new LogRing({ dir, memoryLines: 16 });
  published = [];
  online = true;
  waiters = [];
});

afterEach(() => {
  streamer.stopAll();
  ring.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('LogStreamer', () => {
  it('sends the backlog after the sequence asked for, says when it caught up, then follows', async () => {
    for (let n = 0; n < 5; n++) ring.append('app:demo', 'stdout', `old ${n}`);
    start();
    streamer.handle(watch({ afterSeq: 2 }));
    await until((batches) => batches.some((batch) => batch.caughtUp));
    expect(seqs(published)).toEqual([3, 4]);
    ring.append('app:demo', 'stdout', 'new');
    await until((batches) => seqs(batches).includes(5));
    expect(published.at(-1)?.lines.map((line) => line.text)).toEqual(['new']);
  });

  it('sends a backlog of many lines in batches of at most 256 lines, in order, and ends without follow', async () => {
    for (let n = 0; n < 1000; n++) ring.append('app:demo', 'stdout', `line ${n}`);
    start();
    streamer.handle(watch({ afterSeq: -1, follow: false }));
    await until((batches) => batches.some((batch) => batch.end));
    expect(published.every((batch) => batch.lines.length <= 256)).toBe(true);
    expect(seqs(published)).toEqual([...Array(1000).keys()]);
    expect(published.at(-1)).toMatchObject({ caughtUp: true, end: true });
    expect(streamer.active).toEqual([]);
  });

  it('keeps a batch of long lines under the payload limit', async () => {
    for (let n = 0; n < 100; n++) ring.append('app:demo', 'stdout', 'z'.repeat(4000));
    start();
    streamer.handle(watch({ afterSeq: -1, follow: false }));
    await until((batches) => batches.some((batch) => batch.end));
    for (const batch of published) expect(Buffer.byteLength(JSON.stringify(batch))).toBeLessThan(60 * 1024);
    expect(seqs(published)).toHaveLength(100);
  });

  it('streams only the app asked for, and starts from the newest N lines of it', async () => {
    for (let n = 0; n < 6; n++) ring.append(n % 2 ? 'agent' : 'app:demo', 'stdout', `line ${n}`);
    start();
    streamer.handle(watch({ sources: ['app:demo'], tail: 2, follow: false }));
    await until((batches) => batches.some((batch) => batch.end));
    expect(published.flatMap((batch) => batch.lines.map((line) => line.text))).toEqual(['line 2', 'line 4']);
    expect(published.at(-1)?.through).toBe(5);
  });

  it('refuses an app the device does not have, naming the ones it has', async () => {
    start();
    streamer.handle(watch({ sources: ['app:nope'] }));
    await until((batches) => batches.length > 0);
    expect(published).toEqual([
      {
        watch: 'w1',
        lines: [],
        end: true,
        error: 'no app named nope on this device (apps: demo, kernel)',
        errorCode: 'log-source-unknown',
      },
    ]);
    expect(streamer.active).toEqual([]);
  });

  it('takes an app name that is a VM as that VM', async () => {
    ring.append('vm:kernel', 'stdout', 'booted');
    start();
    streamer.handle(watch({ sources: ['app:kernel'], afterSeq: -1, follow: false }));
    await until((batches) => batches.some((batch) => batch.end));
    expect(published.flatMap((batch) => batch.lines.map((line) => line.text))).toEqual(['booted']);
  });

  it('stops streaming when the lease ends unless renewed, and at a stop', async () => {
    start();
    streamer.handle(watch({ leaseUntil: Date.now() + 200 }));
    await until((batches) => batches.some((batch) => batch.caughtUp));
    // A renewal (the same start again) keeps it going past the first lease.
    streamer.handle(watch({ leaseUntil: Date.now() + 1_500, afterSeq: 1000 }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(streamer.active).toEqual(['w1']);
    ring.append('agent', 'stdout', 'still watched');
    await until((batches) => seqs(batches).includes(0));
    const deadline = Date.now() + 5_000;
    while (streamer.active.length > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(streamer.active).toEqual([]);
    const count = published.length;
    ring.append('agent', 'stdout', 'nobody watches');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(published).toHaveLength(count);

    streamer.handle(watch({ watch: 'w2' }));
    await until((batches) => batches.some((batch) => batch.watch === 'w2'));
    streamer.handle(watch({ watch: 'w2', action: 'stop' }));
    expect(streamer.active).toEqual([]);
  });

  it('ignores a start whose lease ended long ago (redelivered after a reconnect)', () => {
    start();
    streamer.handle(watch({ leaseUntil: Date.now() - 120_000, issuedAt: Date.now() - 150_000 }));
    expect(streamer.active).toEqual([]);
  });

  it('drops a watch when publishing fails, and a renewal resumes it after the sequence given', async () => {
    for (let n = 0; n < 3; n++) ring.append('app:demo', 'stdout', `line ${n}`);
    start();
    online = false;
    streamer.handle(watch({ afterSeq: -1 }));
    const deadline = Date.now() + 5_000;
    while (streamer.active.length > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(streamer.active).toEqual([]);
    online = true;
    streamer.handle(watch({ afterSeq: 0 }));
    await until((batches) => batches.some((batch) => batch.caughtUp));
    expect(seqs(published)).toEqual([1, 2]);
  });

  it('refuses more watches than it streams at once', async () => {
    start({ maxWatches: 1 });
    streamer.handle(watch({ watch: 'a' }));
    streamer.handle(watch({ watch: 'b' }));
    await until((batches) => batches.some((batch) => batch.watch === 'b'));
    expect(published.find((batch) => batch.watch === 'b')?.error).toMatch(/at most 1 log watches/);
  });
});
