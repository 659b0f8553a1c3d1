import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { WebhookEventType, WebhookPayload } from '../../protocol/api/webhooks.ts';
import type { Clock } from '../common/clock.ts';
import { generateId } from '../common/secrets.ts';
import { BatchedWriter } from '../telemetry/batched-writer.ts';
import type { NewDelivery, StoredWebhook, WebhookRepository } from './webhook.repository.ts';

/** Something that happened in the fleet, as a webhook hears of it. */
export interface FleetEvent {
  type: WebhookEventType;
  /**
   * The same on every replica that sees the event (`device.offline:<deviceId>:<at>`): the queue
   * takes it once per webhook however many replicas saw it.
   */
  key: string;
  at: number;
  data: WebhookPayload['data'];
}

/** Events are queued in batches: one insert per batch instead of one per event. */
const BATCH_INTERVAL_MS = 50;
const BATCH_MAX_EVENTS = 500;
/**
 * Events waiting to be queued, at most (a fleet reconnecting at once, with the database slow);
 * past this, newer ones are dropped and logged rather than held in memory.
 */
const MAX_WAITING_EVENTS = 20_000;
/** Webhooks are read again at most this often (another replica may have added or removed one). */
const WEBHOOKS_CACHE_MS = 2_000;

/**
 * Turns fleet events into queued deliveries, one per subscribed webhook. `publish` returns at
 * once and never throws: the ingest and the rollout engine that call it never wait on the queue.
 */
export class WebhookEvents {
  private readonly writer = new BatchedWriter<FleetEvent>({
    maxRows: BATCH_MAX_EVENTS,
    intervalMs: BATCH_INTERVAL_MS,
    write: (batch) => this.queue(batch),
  });
  private webhooks: { at: number; list: Promise<StoredWebhook[]> } | null = null;
  private dropping = false;

  constructor(
    private readonly repository: WebhookRepository,
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** Called once new deliveries are queued (the dispatcher sends them). */
    private readonly onQueued: () => void,
  ) {}

  publish(event: FleetEvent): void {
    if (this.writer.size >= MAX_WAITING_EVENTS) {
      if (!this.dropping)
        this.logger.error({ event: event.type }, 'webhook events backlog full: dropping events');
      this.dropping = true;
      return;
    }
    this.dropping = false;
    this.writer.push(event);
  }

  /** The webhook list changed on this replica: read it again now. */
  forgetWebhooks(): void {
    this.webhooks = null;
  }

  /** Waits until everything published so far is queued. */
  flush(): Promise<void> {
    return this.writer.flush();
  }

  private async queue(batch: FleetEvent[]): Promise<void> {
    try {
      const webhooks = await this.subscribers();
      const deliveries = batch.flatMap((event) =>
        webhooks
          .filter((webhook) => webhook.events.includes(event.type))
          .map((webhook) => deliveryFor(webhook, event, this.clock.now())),
      );
      if ((await this.repository.enqueue(deliveries)) > 0) this.onQueued();
    } catch (error) {
      this.logger.error({ err: error, events: batch.length }, 'webhook events not queued: dropped');
    }
  }

  private subscribers(): Promise<StoredWebhook[]> {
    const now = this.clock.now();
    if (!this.webhooks || now - this.webhooks.at > WEBHOOKS_CACHE_MS) {
      const list = this.repository.list();
      // A failed read is not cached: the next batch reads again.
      list.catch(() => {
        this.webhooks = null;
      });
      this.webhooks = { at: now, list };
    }
    return this.webhooks.list;
  }
}

/** The id every webhook gets in the body for this event: derived from its key, so equal on every replica. */
export const eventIdOf = (key: string) =>
  `evt-${createHash('sha256').update(key).digest('hex').slice(0, 24)}`;

function deliveryFor(webhook: StoredWebhook, event: FleetEvent, now: number): NewDelivery {
  const eventId = eventIdOf(event.key);
  const payload: WebhookPayload = { id: eventId, type: event.type, at: event.at, data: event.data };
  return {
    id: generateId('whd'),
    webhookId: webhook.id,
    eventKey: event.key,
    eventId,
    type: event.type,
    body: JSON.stringify(payload),
    createdAt: now,
  };
}
