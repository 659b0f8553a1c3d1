import { describe, expect, it } from 'vitest';
import { type AuthRateLimits, AuthRateLimiter } from './auth-rate-limiter.ts';

const LIMITS: AuthRateLimits = {
  perDevice: { freeFailures: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, forgetAfterMs: 60_000 },
  perSource: { freeFailures: 5, baseDelayMs: 1_000, maxDelayMs: 8_000, forgetAfterMs: 60_000 },
  maxKeys: 100,
};

/** A limiter on a clock the test moves. */
function limiterAt(start = 1_000_000, limits = LIMITS) {
  const clock = { now: start };
  const limiter = new AuthRateLimiter(limits, () => clock.now);
  return { limiter, clock };
}

describe('AuthRateLimiter', () => {
  it('lets the free failures through, then makes the device id wait twice as long after each failure', () => {
    const { limiter, clock } = limiterAt();
    const waits: number[] = [];
    for (let attempt = 0; attempt < 8; attempt++) {
      const verdict = limiter.check('dev-a', `10.0.0.${attempt}`);
      waits.push(verdict.limited ? verdict.retryAfterMs : 0);
      if (verdict.limited) clock.now += verdict.retryAfterMs;
      limiter.recordFailure('dev-a', `10.0.0.${attempt}`);
    }
    expect(waits).toEqual([0, 0, 0, 1_000, 2_000, 4_000, 8_000, 8_000]);
  });

  it('limits a source address across device ids, with its own allowance', () => {
    const { limiter } = limiterAt();
    for (let i = 0; i < 5; i++) {
      expect(limiter.check(`dev-${i}`, '10.0.0.9')).toEqual({ limited: false });
      limiter.recordFailure(`dev-${i}`, '10.0.0.9');
    }
    expect(limiter.check('dev-fresh', '10.0.0.9')).toEqual({ limited: true, retryAfterMs: 1_000 });
    expect(limiter.check('dev-fresh', '10.0.0.10')).toEqual({ limited: false });
  });

  it('refuses while waiting and lets the next attempt through once the wait is over', () => {
    const { limiter, clock } = limiterAt();
    for (let i = 0; i < 3; i++) limiter.recordFailure('dev-a', `10.0.0.${i}`);
    expect(limiter.check('dev-a', '10.0.1.1')).toEqual({ limited: true, retryAfterMs: 1_000 });
    clock.now += 999;
    expect(limiter.check('dev-a', '10.0.1.1')).toEqual({ limited: true, retryAfterMs: 1 });
    clock.now += 1;
    expect(limiter.check('dev-a', '10.0.1.1')).toEqual({ limited: false });
  });

  it('clears the device id on a success but not the source address', () => {
    const { limiter, clock } = limiterAt();
    for (let i = 0; i < 5; i++) limiter.recordFailure('dev-a', '10.0.0.1');
    expect(limiter.check('dev-a', '10.0.0.2')).toEqual({ limited: true, retryAfterMs: 4_000 });
    clock.now += 4_000;
    limiter.recordSuccess('dev-a');
    // Cleared: three failures are free again for the id.
    for (let i = 0; i < 2; i++) limiter.recordFailure('dev-a', '10.0.0.2');
    expect(limiter.check('dev-a', '10.0.0.2')).toEqual({ limited: false });
    // The address kept its five failures: its next failure makes it wait 2 s, for any id.
    limiter.recordFailure('dev-b', '10.0.0.1');
    expect(limiter.check('dev-c', '10.0.0.1')).toEqual({ limited: true, retryAfterMs: 2_000 });
  });

  it('forgets a key after a quiet period, so old failures do not count against a new burst', () => {
    const { limiter, clock } = limiterAt();
    for (let i = 0; i < 3; i++) limiter.recordFailure('dev-a', `10.0.0.${i}`);
    clock.now += 60_000;
    limiter.recordFailure('dev-other', '10.9.9.9');
    limiter.recordFailure('dev-a', '10.0.0.1');
    expect(limiter.check('dev-a', '10.0.2.1')).toEqual({ limited: false });
  });

  it('remembers at most maxKeys ids and addresses, dropping the stalest', () => {
    const { limiter, clock } = limiterAt(1_000_000, { ...LIMITS, maxKeys: 10 });
    for (let i = 0; i < 50; i++) {
      clock.now += 1;
      limiter.recordFailure(`dev-${i}`, `10.0.${i}.1`);
    }
    expect(limiter.remembered).toEqual({ devices: 10, sources: 10 });
  });
});
