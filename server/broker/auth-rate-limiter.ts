/** How failed attempts under one key (a device id, a source address) are slowed down. */
export interface BackoffPolicy {
  /** Failed attempts allowed without waiting; the next attempt waits `baseDelayMs`. */
  freeFailures: number;
  /** The first wait; each further failure doubles it, up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A key with no failure for this long starts again from nothing (longer than `maxDelayMs`). */
  forgetAfterMs: number;
}

export interface AuthRateLimits {
  perDevice: BackoffPolicy;
  /** More generous than per device: many devices may share an address behind NAT. */
  perSource: BackoffPolicy;
  /** Keys remembered per kind at most, so spraying ids or addresses cannot grow memory without bound. */
  maxKeys: number;
}

const MINUTE_MS = 60_000;

export const DEVICE_AUTH_LIMITS: AuthRateLimits = {
  perDevice: {
    freeFailures: 5,
    baseDelayMs: 1_000,
    maxDelayMs: 5 * MINUTE_MS,
    forgetAfterMs: 15 * MINUTE_MS,
  },
  perSource: {
    freeFailures: 20,
    baseDelayMs: 1_000,
    maxDelayMs: 5 * MINUTE_MS,
    forgetAfterMs: 15 * MINUTE_MS,
  },
  maxKeys: 100_000,
};

export type RateLimitVerdict = { limited: false } | { limited: true; retryAfterMs: number };

interface FailureRecord {
  failures: number;
  lastFailureAt: number;
  blockedUntil: number;
}

/** Failures under one kind of key, kept in order of the latest failure so the stalest go first. */
class FailureBook {
  private readonly records = new Map<string, FailureRecord>();

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly maxKeys: number,
  ) {}

  waitMs(key: string, now: number): number {
    const record = this.records.get(key);
    return record ? Math.max(0, record.blockedUntil - now) : 0;
  }

  fail(key: string, now: number): void {
    this.forgetStale(now);
    const previous = this.records.get(key);
    const failures = (previous?.failures ?? 0) + 1;
    const over = failures - this.policy.freeFailures;
    const delay = over >= 0 ? Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** over) : 0;
    this.records.delete(key);
    this.records.set(key, { failures, lastFailureAt: now, blockedUntil: now + delay });
    if (this.records.size > this.maxKeys) this.records.delete(this.records.keys().next().value as string);
  }

  reset(key: string): void {
    this.records.delete(key);
  }

  get size(): number {
    return this.records.size;
  }

  private forgetStale(now: number): void {
    for (const [key, record] of this.records) {
      if (now - record.lastFailureAt < this.policy.forgetAfterMs) return;
      this.records.delete(key);
    }
  }
}

/**
 * Slows down guessing device credentials: failed attempts are counted per device id and per
 * source address, and past a few free ones each key must wait, twice as long after every further
 * failure. While either key waits, attempts are refused without checking the secret (and do not
 * count). A success clears the device id but not the address, so an attacker cannot clear its
 * own address by logging in as a device it owns. MQTT and HTTP share one limiter.
 *
 * The counts live in this process only: with several replicas each slows an attacker on its own.
 */
export class AuthRateLimiter {
  private readonly devices: FailureBook;
  private readonly sources: FailureBook;

  constructor(
    limits: AuthRateLimits = DEVICE_AUTH_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.devices = new FailureBook(limits.perDevice, limits.maxKeys);
    this.sources = new FailureBook(limits.perSource, limits.maxKeys);
  }

  check(deviceId: string, source: string): RateLimitVerdict {
    const now = this.now();
    const waitMs = Math.max(this.devices.waitMs(deviceId, now), this.sources.waitMs(source, now));
    return waitMs > 0 ? { limited: true, retryAfterMs: waitMs } : { limited: false };
  }

  recordFailure(deviceId: string, source: string): void {
    const now = this.now();
    this.devices.fail(deviceId, now);
    this.sources.fail(source, now);
  }

  recordSuccess(deviceId: string): void {
    this.devices.reset(deviceId);
  }

  /** How many device ids and addresses are remembered (for tests of the memory bound). */
  get remembered(): { devices: number; sources: number } {
    return { devices: this.devices.size, sources: this.sources.size };
  }
}
