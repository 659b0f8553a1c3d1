import type { Logger } from 'pino';
import {
  DEFAULT_BOARD_BAUD,
  LOG_BATCH_MAX_LINES,
  type LogBatch,
  type LogLine,
  type LogSource,
  type LogWatch,
} from '../../protocol/device-logs.ts';
import type { LogRing, SourceFilter } from './log-ring.ts';

/** The workloads a watch may name: app bundles (`app:<name>`) and VMs (`vm:<name>`). */
export interface Workloads {
  apps: string[];
  vms: string[];
}

/** An attached board whose serial output is captured while a watch names it (see BoardCapture). */
export interface BoardSource {
  readonly source: LogSource;
  /** Null, or why this watch cannot capture at `baud`. */
  acquire(watch: string, baud: number): string | null;
  release(watch: string): void;
}

export interface LogStreamerOptions {
  ring: LogRing;
  /** Sends one batch (QoS 1); false when the agent is offline or the broker did not acknowledge it. */
  publish: (batch: LogBatch) => Promise<boolean>;
  workloads: () => Workloads;
  /** The attached board, once known (null: the device has none). */
  board?: () => BoardSource | null;
  logger?: Logger;
  now?: () => number;
  /** How long new lines are gathered before they go out (default 5 ms). */
  coalesceMs?: number;
  /** Watches streamed at once (default 4); one more is refused. */
  maxWatches?: number;
}

/** A batch's lines stay under this many bytes of JSON, well inside the 64 KiB payload limit. */
const BATCH_MAX_BYTES = 48 * 1024;
/** A lease is counted from arrival (device and server clocks may differ), and never longer than this. */
const MAX_LEASE_MS = 120_000;
/** A watch whose lease ended more than this long ago (by the device's clock) is a redelivered old message. */
const STALE_AFTER_MS = 60_000;

interface Watch {
  readonly id: string;
  readonly filter: SourceFilter;
  readonly follow: boolean;
  /** The attached board this watch keeps captured, if it names it. */
  readonly board: BoardSource | null;
  stopped: boolean;
  leaseTimer: NodeJS.Timeout | null;
  /** Resolves the wait for a new line (or the stop). */
  wake: (() => void) | null;
}

/**
 * Streams the log ring to whoever watches, and only while someone does: a `start` for a new watch
 * sends the backlog it asks for, then (with `follow`) new lines as they come, each watch on one
 * publish chain so lines arrive in order, until its lease runs out or a `stop` arrives. A `start`
 * for a watch already streamed renews its lease. The next batch is read only once the broker
 * acknowledged the last, so a slow link holds nothing in memory: the lines wait in the ring.
 */
export class LogStreamer {
  private readonly watches = new Map<string, Watch>();
  private readonly now: () => number;
  private readonly coalesceMs: number;
  private readonly maxWatches: number;
  private readonly onLine = () => {
    for (const watch of this.watches.values()) watch.wake?.();
  };

  constructor(private readonly options: LogStreamerOptions) {
    this.now = options.now ?? Date.now;
    this.coalesceMs = options.coalesceMs ?? 5;
    this.maxWatches = options.maxWatches ?? 4;
    options.ring.on('line', this.onLine);
  }

  /** The ids of the watches being streamed. */
  get active(): string[] {
    return [...this.watches.keys()];
  }

  handle(message: LogWatch): void {
    const existing = this.watches.get(message.watch);
    if (message.action === 'stop') {
      if (existing) this.stop(existing);
      return;
    }
    if (this.now() > message.leaseUntil + STALE_AFTER_MS) return;
    if (existing) {
      this.renew(existing, message);
      return;
    }
    const refusal = this.refusal(message);
    if ('error' in refusal) {
      void this.options.publish({ watch: message.watch, lines: [], end: true, ...refusal });
      return;
    }
    // Only a follow opens the board's port (opening it resets an Uno): a backlog is in the ring already.
    const board = message.follow ? (refusal.board ?? null) : null;
    const busy = board?.acquire(message.watch, message.baud ?? DEFAULT_BOARD_BAUD);
    if (busy) {
      void this.options.publish({
        watch: message.watch,
        lines: [],
        end: true,
        error: busy,
        errorCode: 'conflict',
      });
      return;
    }
    const watch: Watch = {
      id: message.watch,
      filter: refusal.filter,
      follow: message.follow,
      board,
      stopped: false,
      leaseTimer: null,
      wake: null,
    };
    this.watches.set(watch.id, watch);
    this.renew(watch, message);
    void this.stream(watch, this.startAfter(message, watch.filter)).catch((error: unknown) => {
      this.options.logger?.warn({ err: error, watch: watch.id }, 'log watch failed');
      this.stop(watch);
    });
  }

  /** Stops every watch (the agent is stopping). */
  stopAll(): void {
    for (const watch of this.watches.values()) this.stop(watch);
    this.options.ring.off('line', this.onLine);
  }

  /** Why a watch cannot be streamed, or the filter of the sources it names (and the board it captures). */
  private refusal(
    message: LogWatch,
  ): { error: string; errorCode: string } | { filter: SourceFilter; board?: BoardSource } {
    if (this.watches.size >= this.maxWatches)
      return {
        error: `this device streams at most ${this.maxWatches} log watches at once: try again when one ends`,
        errorCode: 'conflict',
      };
    if (!message.sources) return { filter: null };
    const { apps, vms } = this.options.workloads();
    const sources = new Set<LogSource>();
    let board: BoardSource | undefined;
    for (const source of message.sources) {
      const [kind, name] = splitSource(source);
      if (kind === 'board') {
        const attached = this.options.board?.() ?? null;
        if (attached?.source !== source)
          return {
            error: `no board attached on ${name} (${attached ? `the attached board is ${attached.source}` : 'this device has no attached board'})`,
            errorCode: 'log-source-unknown',
          };
        board = attached;
        sources.add(source);
      } else if (
        kind === 'agent' ||
        (kind === 'app' && apps.includes(name)) ||
        (kind === 'vm' && vms.includes(name))
      )
        sources.add(source);
      else if (kind === 'app' && vms.includes(name)) sources.add(`vm:${name}`);
      else {
        const known = [...apps, ...vms];
        return {
          error: `no app named ${name} on this device (apps: ${known.length > 0 ? known.join(', ') : 'none'})`,
          errorCode: 'log-source-unknown',
        };
      }
    }
    return { filter: sources, ...(board && { board }) };
  }

  private startAfter(message: LogWatch, filter: SourceFilter): number {
    const ring = this.options.ring;
    if (message.afterSeq !== undefined) return message.afterSeq;
    if (message.sinceAt !== undefined) return ring.afterSeqSince(message.sinceAt);
    if (message.tail !== undefined) return ring.afterSeqForTail(message.tail, filter);
    return ring.nextSeq - 1;
  }

  private renew(watch: Watch, message: LogWatch): void {
    if (watch.leaseTimer) clearTimeout(watch.leaseTimer);
    const leaseMs = Math.min(Math.max(message.leaseUntil - message.issuedAt, 0), MAX_LEASE_MS);
    watch.leaseTimer = setTimeout(() => this.stop(watch), leaseMs);
    watch.leaseTimer.unref();
  }

  private stop(watch: Watch): void {
    if (watch.stopped) return;
    watch.stopped = true;
    if (watch.leaseTimer) clearTimeout(watch.leaseTimer);
    this.watches.delete(watch.id);
    watch.board?.release(watch.id);
    watch.wake?.();
  }

  /** The backlog after `after`, then (following) each new line, one acknowledged batch at a time. */
  private async stream(watch: Watch, after: number): Promise<void> {
    const ring = this.options.ring;
    let caughtUp = false;
    while (!watch.stopped) {
      const page = ring.read(after, watch.filter, LOG_BATCH_MAX_LINES);
      const lines = withinBytes(page.lines);
      const through = lines.length < page.lines.length ? (lines.at(-1) as LogLine).seq : page.through;
      const atEnd = through >= ring.nextSeq - 1;
      if (lines.length === 0 && caughtUp) {
        await this.nextLine(watch);
        continue;
      }
      const batch: LogBatch = { watch: watch.id, lines, through };
      if (atEnd && !caughtUp) {
        caughtUp = true;
        batch.caughtUp = true;
        if (!watch.follow) batch.end = true;
      }
      // Offline, or not acknowledged: the server's next renewal starts the watch again after `through`.
      if (!(await this.options.publish(batch)) || batch.end) {
        this.stop(watch);
        return;
      }
      after = through;
    }
  }

  /** Waits for a line to be written (then a few ms more, so a burst goes out as one batch) or the stop. */
  private async nextLine(watch: Watch): Promise<void> {
    await new Promise<void>((resolve) => {
      watch.wake = resolve;
    });
    watch.wake = null;
    if (!watch.stopped && this.coalesceMs > 0)
      await new Promise((resolve) => setTimeout(resolve, this.coalesceMs));
  }
}

function splitSource(source: LogSource): [kind: string, name: string] {
  const colon = source.indexOf(':');
  return colon === -1 ? [source, ''] : [source.slice(0, colon), source.slice(colon + 1)];
}

/** The first lines whose JSON fits in a batch (at least one: a single line always fits). */
function withinBytes(lines: LogLine[]): LogLine[] {
  let bytes = 0;
  for (let index = 0; index < lines.length; index++) {
    bytes += Buffer.byteLength(JSON.stringify(lines[index])) + 1;
    if (bytes > BATCH_MAX_BYTES && index > 0) return lines.slice(0, index);
  }
  return lines;
}
