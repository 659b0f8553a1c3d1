import { Inject, Injectable } from '@nestjs/common';
import type { Selectable } from 'kysely';
import {
  isWebhookEventType,
  type Webhook,
  type WebhookAttempt,
  type WebhookDelivery,
  type WebhookEventType,
} from '../../protocol/api/webhooks.ts';
import { DATABASE } from '../db/database.provider.ts';
import type { Database } from '../db/database.ts';
import type { WebhookDeliveryTable, WebhookTable } from '../db/schema.ts';

/** A webhook with the secret its deliveries are signed with (never answered by the API). */
export interface StoredWebhook extends Webhook {
  secret: string;
}

/** One event for one webhook, to queue. */
export interface NewDelivery {
  id: string;
  webhookId: string;
  /** Deterministic for the event (`device.offline:<deviceId>:<at>`): a second enqueue of it is ignored. */
  eventKey: string;
  eventId: string;
  type: WebhookEventType;
  body: string;
  createdAt: number;
}

/** A delivery a worker claimed, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  type: WebhookEventType;
  body: string;
  /** Attempts made before this one. */
  attempts: number;
  url: string;
  secret: string;
}

export interface AttemptRecord {
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/** Where a delivery stands after an attempt. */
export type AttemptOutcome =
  { status: 'delivered' | 'failed'; finishedAt: number } | { status: 'pending'; nextAttemptAt: number };

/** Webhooks, their queue of deliveries and the attempts made, on SQLite and PostgreSQL alike. */
@Injectable()
export class WebhookRepository {
  constructor(@Inject(DATABASE) private readonly db: Database) {}

  async create(webhook: StoredWebhook): Promise<void> {
    await this.db
      .insertInto('webhooks')
      .values({
        id: webhook.id,
        url: webhook.url,
        events: JSON.stringify(webhook.events),
        secret: webhook.secret,
        created_at: webhook.createdAt,
        created_by: webhook.createdBy,
      })
      .execute();
  }

  /** Oldest first. */
  async list(): Promise<StoredWebhook[]> {
    const rows = await this.db
      .selectFrom('webhooks')
      .selectAll()
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toWebhook);
  }

  async get(id: string): Promise<StoredWebhook | null> {
    const row = await this.db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toWebhook(row) : null;
  }

  /** Deletes the webhook with its deliveries and their attempts; false when there was none. */
  async delete(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const deliveries = trx.selectFrom('webhook_deliveries').select('id').where('webhook_id', '=', id);
      await trx.deleteFrom('webhook_attempts').where('delivery_id', 'in', deliveries).execute();
      await trx.deleteFrom('webhook_deliveries').where('webhook_id', '=', id).execute();
      const result = await trx.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    });
  }

  /**
   * Queues deliveries, pending and due now; one whose (webhook, event key) is queued already is
   * left as it is. Returns how many were new.
   */
  async enqueue(deliveries: readonly NewDelivery[]): Promise<number> {
    if (deliveries.length === 0) return 0;
    const result = await this.db
      .insertInto('webhook_deliveries')
      .values(
        deliveries.map((delivery) => ({
          id: delivery.id,
          webhook_id: delivery.webhookId,
          event_key: delivery.eventKey,
          event_id: delivery.eventId,
          event_type: delivery.type,
          body: delivery.body,
          created_at: delivery.createdAt,
          status: 'pending' as const,
          attempts: 0,
          next_attempt_at: delivery.createdAt,
          claimed_until: null,
          finished_at: null,
        })),
      )
      .onConflict((conflict) => conflict.columns(['webhook_id', 'event_key']).doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0);
  }

  /**
   * Claims up to `limit` pending deliveries that are due and not claimed (or whose claim ran
   * out) until `now + claimMs`, in one UPDATE: two replicas never claim the same one at once.
   * Deliveries to the webhooks in `skipWebhooks` are left (this replica is busy with them).
   */
  async claimDue(
    now: number,
    limit: number,
    claimMs: number,
    skipWebhooks: readonly string[] = [],
  ): Promise<ClaimedDelivery[]> {
    let due = this.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('status', '=', 'pending')
      .where('next_attempt_at', '<=', now)
      .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<', now)]))
      .orderBy('next_attempt_at')
      .limit(limit);
    if (skipWebhooks.length > 0) due = due.where('webhook_id', 'not in', [...skipWebhooks]);
    const claimed = await this.db
      .updateTable('webhook_deliveries')
      .set({ claimed_until: now + claimMs })
      .where('id', 'in', due)
      // Checked again on the row itself: another replica may have claimed it since the select.
      .where('status', '=', 'pending')
      .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<', now)]))
      .returning('id')
      .execute();
    if (claimed.length === 0) return [];
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .innerJoin('webhooks', 'webhooks.id', 'webhook_deliveries.webhook_id')
      .select([
        'webhook_deliveries.id',
        'webhook_deliveries.webhook_id',
        'webhook_deliveries.event_type',
        'webhook_deliveries.body',
        'webhook_deliveries.attempts',
        'webhooks.url',
        'webhooks.secret',
      ])
      .where(
        'webhook_deliveries.id',
        'in',
        claimed.map((row) => row.id),
      )
      .orderBy('webhook_deliveries.next_attempt_at')
      .execute();
    return rows.map((row) => ({
      id: row.id,
      webhookId: row.webhook_id,
      type: row.event_type as WebhookEventType,
      body: row.body,
      attempts: Number(row.attempts),
      url: row.url,
      secret: row.secret,
    }));
  }

  /** Records an attempt and where the delivery stands now, releasing the claim. */
  async recordAttempt(deliveryId: string, attempt: AttemptRecord & { id: string }, outcome: AttemptOutcome) {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('webhook_attempts')
        .values({
          id: attempt.id,
          delivery_id: deliveryId,
          at: attempt.at,
          status_code: attempt.statusCode,
          error: attempt.error,
          duration_ms: attempt.durationMs,
        })
        .execute();
      await trx
        .updateTable('webhook_deliveries')
        .set((eb) => ({
          attempts: eb('attempts', '+', 1),
          status: outcome.status,
          claimed_until: null,
          ...(outcome.status === 'pending'
            ? { next_attempt_at: outcome.nextAttemptAt }
            : { finished_at: outcome.finishedAt }),
        }))
        .where('id', '=', deliveryId)
        .where('status', '=', 'pending')
        .execute();
    });
  }

  /** Gives a claim back without an attempt (the server stops mid-send): another replica may send at once. */
  async releaseClaim(deliveryId: string): Promise<void> {
    await this.db
      .updateTable('webhook_deliveries')
      .set({ claimed_until: null })
      .where('id', '=', deliveryId)
      .execute();
  }

  /** A webhook's deliveries, newest first, each with its attempts oldest first. */
  async deliveries(webhookId: string, limit: number): Promise<WebhookDelivery[]> {
    const rows = await this.db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', webhookId)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    if (rows.length === 0) return [];
    const attempts = await this.db
      .selectFrom('webhook_attempts')
      .selectAll()
      .where(
        'delivery_id',
        'in',
        rows.map((row) => row.id),
      )
      .orderBy('at')
      .orderBy('id')
      .execute();
    const byDelivery = new Map<string, WebhookAttempt[]>();
    for (const attempt of attempts) {
      const list = byDelivery.get(attempt.delivery_id) ?? [];
      list.push({
        at: Number(attempt.at),
        statusCode: attempt.status_code === null ? null : Number(attempt.status_code),
        error: attempt.error,
        durationMs: Number(attempt.duration_ms),
      });
      byDelivery.set(attempt.delivery_id, list);
    }
    return rows.map((row) => toDelivery(row, byDelivery.get(row.id) ?? []));
  }

  /** Deletes deliveries that finished before `before`, with their attempts; returns how many went. */
  async pruneFinished(before: number): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const old = trx
        .selectFrom('webhook_deliveries')
        .select('id')
        .where('status', '!=', 'pending')
        .where('finished_at', '<', before);
      await trx.deleteFrom('webhook_attempts').where('delivery_id', 'in', old).execute();
      const result = await trx
        .deleteFrom('webhook_deliveries')
        .where('status', '!=', 'pending')
        .where('finished_at', '<', before)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    });
  }
}

function toWebhook(row: Selectable<WebhookTable>): StoredWebhook {
  const events = (JSON.parse(row.events) as string[]).filter(isWebhookEventType);
  return {
    id: row.id,
    url: row.url,
    events,
    secret: row.secret,
    createdAt: Number(row.created_at),
    createdBy: row.created_by,
  };
}

function toDelivery(row: Selectable<WebhookDeliveryTable>, attempts: WebhookAttempt[]): WebhookDelivery {
  return {
    id: row.id,
    eventId: row.event_id,
    type: row.event_type as WebhookEventType,
    createdAt: Number(row.created_at),
    status: row.status,
    attempts,
    nextAttemptAt: row.status === 'pending' ? Number(row.next_attempt_at) : null,
    body: row.body,
  };
}
