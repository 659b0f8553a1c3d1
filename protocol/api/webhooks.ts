/**
 * Webhooks: HTTP receivers an admin registers for fleet events. Each event is POSTed as JSON,
 * signed with the webhook's secret (`X-Boardfleet-Signature: sha256=<hex HMAC-SHA-256 of the raw
 * body>`), at least once, retried with backoff, every attempt recorded.
 */
import { z } from 'zod';
import { type ApiOperation, json } from './operation.ts';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../webhook-events.ts';
import { named, timestamp } from './shared.ts';

export {
  isWebhookEventType,
  WEBHOOK_EVENT_TYPES,
  WEBHOOK_HEADERS,
  WEBHOOK_MAX_ATTEMPTS,
  type WebhookEventType,
} from '../webhook-events.ts';

/** Longest URL a webhook may have. */
export const WEBHOOK_URL_MAX_LENGTH = 2048;

export const createWebhookBody = named(
  'CreateWebhook',
  z.strictObject({
    url: z.string().max(WEBHOOK_URL_MAX_LENGTH).describe('http:// or https:// URL the events are POSTed to'),
    events: z
      .array(z.string().max(64))
      .min(1)
      .max(WEBHOOK_EVENT_TYPES.length)
      .describe(`event types: ${WEBHOOK_EVENT_TYPES.join(', ')}`),
  }),
);

export const webhookSchema = named(
  'Webhook',
  z.object({
    id: z.string(),
    url: z.string(),
    events: z.array(z.enum(WEBHOOK_EVENT_TYPES)),
    createdAt: timestamp,
    createdBy: z.string().describe('the operator token that added it'),
  }),
);

export const createdWebhookSchema = named(
  'CreatedWebhook',
  webhookSchema.extend({
    secret: z.string().describe('HMAC-SHA-256 key of the signatures: shown only in this answer'),
  }),
);

export const webhookListSchema = named('WebhookList', z.object({ webhooks: z.array(webhookSchema) }));

export const webhookAttemptSchema = named(
  'WebhookAttempt',
  z.object({
    at: timestamp,
    statusCode: z.number().int().nullable().describe('the HTTP status; null when no answer came'),
    error: z.string().nullable().describe('why it did not count as delivered; null on a 2xx'),
    durationMs: z.number().int(),
  }),
);

export const webhookDeliverySchema = named(
  'WebhookDelivery',
  z.object({
    id: z.string().describe('also sent as X-Boardfleet-Delivery, the same on every retry'),
    eventId: z.string().describe('the body `id`: the same for every webhook that got the event'),
    type: z.enum(WEBHOOK_EVENT_TYPES),
    createdAt: timestamp,
    status: z.enum(['pending', 'delivered', 'failed']),
    attempts: z.array(webhookAttemptSchema).describe('oldest first'),
    nextAttemptAt: timestamp.nullable().describe('when pending: the next try'),
    body: z.string().describe('the exact JSON POSTed (and signed)'),
  }),
);

export const webhookDeliveryListSchema = named(
  'WebhookDeliveryList',
  z.object({ deliveries: z.array(webhookDeliverySchema).describe('newest first') }),
);

export const webhookDeliveriesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

/** The JSON body of every delivery. */
export interface WebhookPayload {
  id: string;
  type: WebhookEventType;
  /** When it happened, ms since the epoch. */
  at: number;
  data: Record<string, string | number | null>;
}

export type CreateWebhook = z.infer<typeof createWebhookBody>;
export type Webhook = z.infer<typeof webhookSchema>;
export type CreatedWebhook = z.infer<typeof createdWebhookSchema>;
export type WebhookList = z.infer<typeof webhookListSchema>;
export type WebhookAttempt = z.infer<typeof webhookAttemptSchema>;
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;
export type WebhookDeliveryList = z.infer<typeof webhookDeliveryListSchema>;

/** A URL as the audit log shows it: no credentials, no query (receivers often put a token there). */
export function webhookUrlForLog(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}${parsed.pathname}`;
  } catch {
    return '(not a URL)';
  }
}

export const webhookOperations = {
  createWebhook: {
    method: 'post',
    path: '/api/v1/webhooks',
    summary:
      'Add a webhook: events are POSTed to its http(s) URL, signed with its secret (X-Boardfleet-Signature: ' +
      'sha256=<hex HMAC-SHA-256 of the body>); the answer carries the secret, shown only this once',
    tag: 'webhooks',
    access: 'admin',
    status: 201,
    body: json(createWebhookBody),
    response: json(createdWebhookSchema),
  },
  listWebhooks: {
    method: 'get',
    path: '/api/v1/webhooks',
    summary: 'Every webhook: URL, events, when and by whom added; never the secret',
    tag: 'webhooks',
    access: 'admin',
    status: 200,
    response: json(webhookListSchema),
  },
  deleteWebhook: {
    method: 'delete',
    path: '/api/v1/webhooks/{id}',
    summary: 'Remove a webhook with its deliveries; nothing more is sent to it',
    tag: 'webhooks',
    access: 'admin',
    status: 200,
    response: json(webhookSchema),
  },
  listWebhookDeliveries: {
    method: 'get',
    path: '/api/v1/webhooks/{id}/deliveries',
    summary:
      "A webhook's deliveries, newest first (limit, default 50): event, status (pending, delivered, failed), " +
      'each attempt with its time, HTTP status or error and duration',
    tag: 'webhooks',
    access: 'admin',
    status: 200,
    query: webhookDeliveriesQuery,
    response: json(webhookDeliveryListSchema),
  },
} as const satisfies Record<string, ApiOperation>;
