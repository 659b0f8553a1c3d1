import type { Logger } from 'pino';
import type { LogLine, LogSource } from '../../protocol/device-logs.ts';

/** An open serial port, read line by line (see serial-lines.ts). */
export interface SerialLines {
  close(): Promise<void>;
}

/** Opens `path` at `baud`; `line` gets each line, `lost` the reason once the port goes away by itself. */
export type OpenSerialLines = (
  path: string,
  baud: number,
  handlers: { line: (text: string) => void; lost: (reason: string) => void },
) => Promise<SerialLines>;

export interface BoardCaptureOptions {
  /** The port as the inventory names it (`auto` included): the source is `board:<port>`. */
  port: string;
  /** The device path to open now (`auto` is looked up at each open). */
  resolvePort: () => Promise<string>;
  open: OpenSerialLines;
  append: (source: LogSource, stream: LogLine['stream'], text: string) => void;
  logger?: Logger;
}

/** Why the port is handed over, as the ring says it. */
export type BoardUse = 'flashing' | 'the Firmata probe';

/**
 * An attached board's serial output, captured into the log ring only while a watch names it: the
 * port opens with the first such watch and closes with the last. The flasher and the Firmata
 * probe come first: `exclusive` closes the port for them (it is opened with an exclusive lock, so
 * they would find it busy) and opens it again afterwards, saying both in the ring. A port that
 * goes away, or cannot be opened, ends the capture with a line saying why; a new watch, or the
 * end of a flash, tries again. Opening the port resets an Uno-class board, as any serial monitor does.
 */
export class BoardCapture {
  readonly source: LogSource;
  /** The watches that name the board (all at the speed `baud`). */
  private readonly watchers = new Set<string>();
  private port: SerialLines | null = null;
  private baud = 0;
  /** Flashes and probes running: the port stays closed until the last one ends. */
  private holders = 0;
  /** The port went away or failed to open: no retry until a new watch or a flash. */
  private ended = false;
  /** Closed for a flash or a probe (`use`) while watched: the next open says it resumed. */
  private paused = false;
  private use: BoardUse = 'flashing';
  /** Opens and closes, one after the other. */
  private transitions: Promise<void> = Promise.resolve();

  constructor(private readonly options: BoardCaptureOptions) {
    this.source = `board:${options.port}`;
  }

  /** A watch names the board; null, or why it cannot be captured at `baud`. */
  acquire(watch: string, baud: number): string | null {
    const current = this.watchers.size > 0 ? this.baud : null;
    if (current !== null && current !== baud && !this.watchers.has(watch))
      return `the board on ${this.options.port} is being captured at ${current} baud by another watch, not ${baud}`;
    this.watchers.add(watch);
    this.baud = baud;
    this.ended = false;
    void this.settle();
    return null;
  }

  /** The watch ended (or no longer names the board). */
  release(watch: string): void {
    if (!this.watchers.delete(watch)) return;
    if (this.watchers.size === 0) this.paused = false;
    void this.settle();
  }

  /** Runs `task` (a flash, a probe) with the port closed, then captures again if still watched. */
  async exclusive<T>(use: BoardUse, task: () => Promise<T>): Promise<T> {
    this.holders++;
    this.use = use;
    try {
      await this.settle();
      return await task();
    } finally {
      this.holders--;
      if (this.holders === 0) this.ended = false;
      void this.settle();
    }
  }

  /** Opens or closes the port to match what is wanted, after any transition under way. */
  private settle(): Promise<void> {
    this.transitions = this.transitions.then(
      () => this.transition(),
      () => this.transition(),
    );
    return this.transitions;
  }

  private async transition(): Promise<void> {
    const wanted = this.watchers.size > 0 && this.holders === 0 && !this.ended;
    if (wanted === (this.port !== null)) return;
    if (!wanted) {
      const port = this.port as SerialLines;
      this.port = null;
      await port
        .close()
        .catch((error: unknown) =>
          this.options.logger?.warn({ err: error }, 'closing the board capture failed'),
        );
      if (this.holders > 0 && this.watchers.size > 0) {
        this.paused = true;
        this.notice(`serial capture paused for ${this.use}`);
      }
      return;
    }
    let path = this.options.port;
    try {
      path = await this.options.resolvePort();
      let port: SerialLines | null = null;
      port = await this.options.open(path, this.baud, {
        line: (text) => this.options.append(this.source, 'stdout', text),
        lost: (reason) => {
          if (port === null || this.port !== port) return;
          this.port = null;
          this.ended = true;
          this.notice(`serial capture ended: ${reason}`);
        },
      });
      this.port = port;
      if (this.paused) this.notice('serial capture resumed');
      else this.notice(`serial capture of ${path} at ${this.baud} baud`);
      this.paused = false;
    } catch (error) {
      this.ended = true;
      this.paused = false;
      this.notice(`serial capture ended: ${(error as Error).message}`);
    }
  }

  private notice(text: string): void {
    this.options.append(this.source, 'stderr', `-- ${text} --`);
  }
}
