import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

export type DatabaseState = 'up' | 'down';

export interface DatabaseHealthEvents {
  'state-changed': [state: DatabaseState, reason: string | null];
}

/** While the database answers, one ping every few seconds notices an outage nobody's query ran into. */
const PING_INTERVAL_MS = 5_000;
/** While it does not, pings back off from a quarter of a second to the steady pace. */
const PING_BACKOFF_FIRST_MS = 250;
/** A ping that hangs (a network partition, a server stopped mid-handshake) counts as a failure. */
const PING_TIMEOUT_MS = 3_000;

/** Milliseconds until the next ping after `consecutiveFailures` failed ones (0 while the database answers). */
export function nextPingDelay(consecutiveFailures: number): number {
  if (consecutiveFailures === 0) return PING_INTERVAL_MS;
  return Math.min(PING_INTERVAL_MS, PING_BACKOFF_FIRST_MS * 2 ** (consecutiveFailures - 1));
}

/** SQLSTATE codes that say the server or the session went away, not that the statement was wrong. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const UNAVAILABLE_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
/** pg reports a lost or refused connection with these messages and no code. */
const UNAVAILABLE_MESSAGE = /connection terminated|not queryable|timeout exceeded when trying to connect/i;

/**
 * Whether a failed query failed because the connection or the database went away (worth retrying
 * once it is back) rather than because of the statement itself (which would fail again).
 */
export function isConnectionLoss(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; depth++) {
    const code = (cause as Error & { code?: unknown }).code;
    if (typeof code === 'string') {
      if (code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code) || UNAVAILABLE_SOCKET_CODES.has(code))
        return true;
    }
    if (UNAVAILABLE_MESSAGE.test(cause.message) || cause instanceof PingTimeoutError) return true;
    cause = cause.cause;
  }
  return false;
}

/** The reason shown while the database is down: the error's message, or its code when it has none. */
export function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return `database unreachable: ${String(error)}`;
  const code = (error as Error & { code?: unknown }).code;
  return `database unreachable: ${error.message || (typeof code === 'string' ? code : error.name)}`;
}

class PingTimeoutError extends Error {
  constructor() {
    super(`no answer to a ping within ${PING_TIMEOUT_MS} ms`);
  }
}

/**
 * Knows whether the database answers: pings it at a steady pace while it does and with backoff
 * while it does not, and at once when a query reports a lost connection. `/healthz` shows its
 * state; writers wait on `whenUp` instead of failing again and again during an outage.
 */
export class DatabaseHealth extends EventEmitter<DatabaseHealthEvents> {
  private current: { state: DatabaseState; reason: string | null } = { state: 'up', reason: null };
  private failures = 0;
  private timer: NodeJS.Timeout | null = null;
  private pinging: Promise<DatabaseState> | null = null;
  private running = false;

  constructor(
    private readonly ping: () => Promise<unknown>,
    private readonly logger: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  get state(): DatabaseState {
    return this.current.state;
  }

  /** Why the database counts as down (the last ping's error), or null while it is up. */
  get reason(): string | null {
    return this.current.reason;
  }

  start(): void {
    this.running = true;
    this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Pings now (or joins the ping under way) and resolves with what it found. */
  check(): Promise<DatabaseState> {
    this.pinging ??= this.pingOnce().finally(() => {
      this.pinging = null;
      this.schedule();
    });
    return this.pinging;
  }

  /** A query failed: when it lost its connection, find out at once whether the database is away. */
  reportFailure(error: unknown): void {
    if (isConnectionLoss(error)) void this.check();
  }

  /** Resolves true once the database is up (at once if it is), false if `signal` aborts first. */
  whenUp(signal: AbortSignal): Promise<boolean> {
    if (this.current.state === 'up') return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const settle = (up: boolean) => {
        this.off('state-changed', onChange);
        signal.removeEventListener('abort', onAbort);
        resolve(up);
      };
      const onChange = (state: DatabaseState) => {
        if (state === 'up') settle(true);
      };
      const onAbort = () => settle(false);
      this.on('state-changed', onChange);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private schedule(): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.check(), nextPingDelay(this.failures));
    this.timer.unref();
  }

  private async pingOnce(): Promise<DatabaseState> {
    let timeout: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.ping(),
        new Promise((_, reject) => {
          timeout = setTimeout(() => reject(new PingTimeoutError()), PING_TIMEOUT_MS);
        }),
      ]);
      this.failures = 0;
      this.transition('up', null);
    } catch (error) {
      this.failures++;
      this.transition('down', describeFailure(error));
    } finally {
      clearTimeout(timeout);
    }
    return this.current.state;
  }

  private transition(state: DatabaseState, reason: string | null): void {
    const previous = this.current.state;
    this.current = { state, reason };
    if (state === previous) return;
    if (state === 'down') this.logger.warn({ reason }, 'database unavailable');
    else this.logger.info('database available again');
    this.emit('state-changed', state, reason);
  }
}
