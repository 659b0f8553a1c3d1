/**
 * Runs work in order per key and, across keys, up to `concurrency` pieces at once: a device's
 * messages stay in the order they came while the database takes many devices' writes on
 * several connections. Work handles its own failures: the queue goes on after one that rejects.
 */
export class KeyedQueue {
  /** Work not started yet, per key, oldest first. */
  private readonly waiting = new Map<string, Array<() => Promise<void>>>();
  /** Keys with waiting work and none running, in the order they became ready. */
  private readonly ready: string[] = [];
  private readonly running = new Set<string>();
  private pending = 0;
  private whenIdle: Array<() => void> = [];

  constructor(private readonly concurrency: number) {}

  /** Work queued or running. */
  get size(): number {
    return this.pending;
  }

  push(key: string, work: () => Promise<void>): void {
    this.pending++;
    const queue = this.waiting.get(key);
    if (queue) queue.push(work);
    else {
      this.waiting.set(key, [work]);
      if (!this.running.has(key)) this.ready.push(key);
    }
    this.startWhatFits();
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.whenIdle.push(resolve));
  }

  private startWhatFits(): void {
    while (this.running.size < this.concurrency && this.ready.length > 0) {
      const key = this.ready.shift() as string;
      const queue = this.waiting.get(key) as Array<() => Promise<void>>;
      const work = queue.shift() as () => Promise<void>;
      if (queue.length === 0) this.waiting.delete(key);
      this.running.add(key);
      const done = () => this.finished(key);
      work().then(done, done);
    }
  }

  private finished(key: string): void {
    this.running.delete(key);
    this.pending--;
    if (this.waiting.has(key)) this.ready.push(key);
    this.startWhatFits();
    if (this.pending === 0) {
      const waiters = this.whenIdle;
      this.whenIdle = [];
      for (const resolve of waiters) resolve();
    }
  }
}
