/**
 * Device messages stored in batches, in arrival order: a statement per batch instead of one per
 * message. A batch is written once `maxRows` wait or `intervalMs` after the first (with 0, at
 * once, and what arrives meanwhile goes with the next); one batch at a time, and the batch being
 * written stays counted in `size` until `write` settles.
 */
export class BatchedWriter<T> {
  private pending: T[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;

  constructor(
    private readonly options: {
      maxRows: number;
      intervalMs: number;
      /** Stores a batch, or gives it up; never rejects. */
      write: (batch: T[]) => Promise<void>;
    },
  ) {}

  get size(): number {
    return this.pending.length;
  }

  push(item: T): void {
    this.pending.push(item);
    if (this.pending.length >= this.options.maxRows || this.options.intervalMs === 0) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.options.intervalMs);
  }

  /** Writes what waits, batch by batch, until none is left. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.writing ??= this.writeAll().finally(() => {
      this.writing = null;
    });
    return this.writing;
  }

  private async writeAll(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.slice(0, this.options.maxRows);
      await this.options.write(batch);
      this.pending.splice(0, batch.length);
    }
  }
}
