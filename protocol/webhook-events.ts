/**
 * The words of the webhook contract that the dashboard needs too: plain values, no schema code,
 * so the browser bundle can import them (the REST schemas are in api/webhooks.ts).
 */

/** What a webhook can subscribe to. */
export const WEBHOOK_EVENT_TYPES = [
  'device.online',
  'device.offline',
  'device.health-problem',
  'rollout.created',
  'rollout.paused',
  'rollout.completed',
  'rollout.aborted',
  'wave.tripped',
  'deployment.failed',
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

export const isWebhookEventType = (type: string): type is WebhookEventType =>
  (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);

/** Headers of every delivery. */
export const WEBHOOK_HEADERS = {
  event: 'X-Boardfleet-Event',
  delivery: 'X-Boardfleet-Delivery',
  signature: 'X-Boardfleet-Signature',
} as const;

/** Attempts before a delivery is given up (`failed`). */
export const WEBHOOK_MAX_ATTEMPTS = 10;
