import { createHmac } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { WEBHOOK_HEADERS, WEBHOOK_MAX_ATTEMPTS } from '../../protocol/api/webhooks.ts';
import type { Clock } from '../common/clock.ts';
import { generateId } from '../common/secrets.ts';
import type { AttemptOutcome, ClaimedDelivery, WebhookRepository } from './webhook.repository.ts';

/** A receiver gets this long to answer; then the attempt counts as failed. */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** Longest wait between two attempts. */
export const WEBHOOK_MAX_RETRY_MS = 60 * 60 * 1000;
/** Deliveries sent at once by one replica. */
const CONCURRENCY = 8;
/** Of those, to one webhook at most: a receiver that hangs holds two, the others keep flowing. */
const PER_WEBHOOK = 2;
/** How long a claim holds: well past the timeout, so a live sender always records before it runs out. */
const CLAIM_MS = 6 * WEBHOOK_TIMEOUT_MS;
/** Due retries (and another replica's queued events) are looked for this often. */
const POLL_MS = 2_000;
/** Delivered and failed deliveries are kept this long, then pruned (checked hourly). */
export const WEBHOOK_DELIVERY_RETENTION_MS = 14 * 24 * 60 * 60 * 1000;
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;
/** Longest error text recorded for an attempt. */
const MAX_ERROR_LENGTH = 300;

/** `sha256=<hex HMAC-SHA-256 of the body under the secret>`: the X-Boardfleet-Signature header. */
export function webhookSignature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

/**
 * The wait after attempt number `attempt` (1 for the first) failed: the base, doubling with each
 * attempt, at most an hour.
 */
export function retryDelayMs(attempt: number, baseSeconds: number): number {
  return Math.min(baseSeconds * 1000 * 2 ** (attempt - 1), WEBHOOK_MAX_RETRY_MS);
}

/** Where a delivery stands after its attempt number `attempt` got `delivered` or not. */
export function attemptOutcome(
  attempt: number,
  delivered: boolean,
  now: number,
  baseSeconds: number,
): AttemptOutcome {
  if (delivered) return { status: 'delivered', finishedAt: now };
  if (attempt >= WEBHOOK_MAX_ATTEMPTS) return { status: 'failed', finishedAt: now };
  return { status: 'pending', nextAttemptAt: now + retryDelayMs(attempt, baseSeconds) };
}

export interface WebhookDispatcherOptions {
  deliveries: WebhookRepository;
  clock: Clock;
  logger: Logger;
  /** BOARDFLEET_WEBHOOK_RETRY_SECONDS: the first retry's wait. */
  retryBaseSeconds: number;
  timeoutMs?: number;
}

/** What one POST gave: a status, or why there was none. */
interface SendResult {
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/**
 * Sends queued deliveries: claims due ones in the database (so replicas never send the same
 * attempt at once, and a crashed replica's claim runs out), POSTs each signed, records the
 * attempt and schedules the retry. Woken when events are queued, and polls for due retries.
 */
export class WebhookDispatcher {
  private readonly sending = new Set<Promise<void>>();
  /** Sends under way per webhook id. */
  private readonly sendingTo = new Map<string, number>();
  private claiming = false;
  private claimAgain = false;
  private poller: NodeJS.Timeout | null = null;
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private lastPruneAt = 0;
  /** Aborted on stop: sends under way give up, their claims are handed back. */
  private readonly stopping = new AbortController();

  constructor(private readonly options: WebhookDispatcherOptions) {}

  /** Starts polling and sends what was left pending (a restart picks its queue up here). */
  start(): void {
    this.poller = setInterval(() => this.wake(), POLL_MS);
    this.poller.unref();
    this.wake();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    if (this.poller) clearInterval(this.poller);
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    await Promise.all([...this.sending]);
  }

  /** Claims and sends due deliveries, as many as there is room for; never throws. */
  wake(): void {
    if (this.stopping.signal.aborted) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claiming = true;
    void this.claimAndSend()
      .catch((error: unknown) =>
        this.options.logger.warn({ err: error }, 'webhook deliveries not claimed; trying again shortly'),
      )
      .finally(() => {
        this.claiming = false;
        if (this.claimAgain) {
          this.claimAgain = false;
          this.wake();
        }
      });
  }

  private async claimAndSend(): Promise<void> {
    await this.pruneNow();
    for (;;) {
      const room = CONCURRENCY - this.sending.size;
      if (room <= 0 || this.stopping.signal.aborted) return;
      const busy = [...this.sendingTo].filter(([, count]) => count >= PER_WEBHOOK).map(([id]) => id);
      const claimed = await this.options.deliveries.claimDue(this.options.clock.now(), room, CLAIM_MS, busy);
      for (const delivery of claimed) {
        const sendingToWebhook = this.sendingTo.get(delivery.webhookId) ?? 0;
        if (sendingToWebhook >= PER_WEBHOOK) {
          // Claimed in the same batch as others of its webhook: handed back for the next round.
          await this.options.deliveries.releaseClaim(delivery.id);
          continue;
        }
        this.sendingTo.set(delivery.webhookId, sendingToWebhook + 1);
        const sent: Promise<void> = this.send(delivery)
          .catch((error: unknown) =>
            this.options.logger.error(
              { err: error, deliveryId: delivery.id },
              'webhook attempt not recorded: sent again once its claim runs out',
            ),
          )
          .finally(() => {
            this.sending.delete(sent);
            const left = (this.sendingTo.get(delivery.webhookId) ?? 1) - 1;
            if (left > 0) this.sendingTo.set(delivery.webhookId, left);
            else this.sendingTo.delete(delivery.webhookId);
            this.wake();
          });
        this.sending.add(sent);
      }
      // Fewer than asked for: nothing more is due (or only for busy webhooks).
      if (claimed.length < room) return;
    }
  }

  private async send(delivery: ClaimedDelivery): Promise<void> {
    const attempt = delivery.attempts + 1;
    const at = this.options.clock.now();
    const result = await this.post(delivery);
    if (this.stopping.signal.aborted && result.statusCode === null) {
      // Cut short by the stop, not by the receiver: no attempt to count, the next start sends it.
      await this.options.deliveries.releaseClaim(delivery.id);
      return;
    }
    const delivered = result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
    const outcome = attemptOutcome(
      attempt,
      delivered,
      this.options.clock.now(),
      this.options.retryBaseSeconds,
    );
    await this.options.deliveries.recordAttempt(
      delivery.id,
      { id: generateId('wha'), at, ...result },
      outcome,
    );
    const log = { deliveryId: delivery.id, event: delivery.type, attempt, ...result };
    if (outcome.status === 'pending') {
      this.options.logger.info(
        { ...log, nextAttemptAt: outcome.nextAttemptAt },
        'webhook attempt failed; will retry',
      );
      this.wakeAt(outcome.nextAttemptAt);
    } else if (outcome.status === 'failed') {
      this.options.logger.warn(log, `webhook delivery given up after ${attempt} attempts`);
    } else {
      this.options.logger.debug(log, 'webhook delivered');
    }
  }

  private async post(delivery: ClaimedDelivery): Promise<SendResult> {
    const started = performance.now();
    const timeoutMs = this.options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(timeoutMs)]);
    const elapsed = () => Math.round(performance.now() - started);
    try {
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Boardfleet-Webhooks',
          [WEBHOOK_HEADERS.event]: delivery.type,
          [WEBHOOK_HEADERS.delivery]: delivery.id,
          [WEBHOOK_HEADERS.signature]: webhookSignature(delivery.secret, delivery.body),
        },
        body: delivery.body,
        // A redirect is not followed: the body would go, signed, where the admin did not point it.
        redirect: 'manual',
        signal,
      });
      // The answer's body is not read, only released (a receiver cannot make us hold it).
      await response.body?.cancel().catch(() => undefined);
      const ok = response.status >= 200 && response.status < 300;
      return {
        statusCode: response.status,
        error: ok ? null : `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`,
        durationMs: elapsed(),
      };
    } catch (error) {
      const timedOut = !this.stopping.signal.aborted && signal.aborted;
      return {
        statusCode: null,
        error: timedOut ? `no answer within ${timeoutMs / 1000} s` : sendError(error),
        durationMs: elapsed(),
      };
    }
  }

  private wakeAt(at: number): void {
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        this.wake();
      },
      Math.max(0, at - this.options.clock.now()),
    );
    timer.unref();
    this.retryTimers.add(timer);
  }

  private async pruneNow(): Promise<void> {
    const now = this.options.clock.now();
    if (now - this.lastPruneAt < PRUNE_INTERVAL_MS) return;
    this.lastPruneAt = now;
    const pruned = await this.options.deliveries.pruneFinished(now - WEBHOOK_DELIVERY_RETENTION_MS);
    if (pruned > 0) this.options.logger.info({ pruned }, 'old webhook deliveries pruned');
  }
}

/** Why a POST got no answer, in a few words: fetch hides the socket's error in `cause`. */
function sendError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } } | null)?.cause;
  const text = cause?.code
    ? `${cause.code}${cause.message ? `: ${cause.message}` : ''}`
    : error instanceof Error
      ? error.message
      : String(error);
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text;
}
