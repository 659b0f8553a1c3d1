import type { Command } from 'commander';
import {
  type CreatedWebhook,
  type Webhook,
  type WebhookDelivery,
  type WebhookDeliveryList,
  WEBHOOK_EVENT_TYPES,
  type WebhookList,
} from '../../protocol/api/webhooks.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatTime, printJson, printTable } from '../output.ts';

/** `--events a,b` as a list; the server names the valid events when one is unknown. */
function eventList(value: string): string[] {
  const events = value
    .split(',')
    .map((event) => event.trim())
    .filter(Boolean);
  if (events.length === 0)
    throw new BoardfleetError(
      'invalid-option',
      `--events: name at least one of ${WEBHOOK_EVENT_TYPES.join(', ')}`,
    );
  return events;
}

const webhookRow = (webhook: Webhook): Record<string, string> => ({
  id: webhook.id,
  url: webhook.url,
  events: webhook.events.join(','),
  created: formatTime(webhook.createdAt),
  by: webhook.createdBy,
});

/** The last attempt in a few words: its HTTP status, or why there was none. */
function lastAttempt(delivery: WebhookDelivery): string {
  const last = delivery.attempts.at(-1);
  if (!last) return '-';
  if (last.error === null) return String(last.statusCode);
  return last.statusCode === null ? last.error : `${last.statusCode} (${last.error})`;
}

const deliveryRow = (delivery: WebhookDelivery): Record<string, string> => ({
  time: formatTime(delivery.createdAt, 'seconds'),
  event: delivery.type,
  status:
    delivery.status === 'pending' && delivery.nextAttemptAt !== null && delivery.attempts.length > 0
      ? `pending (retry ${formatTime(delivery.nextAttemptAt, 'seconds')})`
      : delivery.status,
  attempts: String(delivery.attempts.length),
  last: lastAttempt(delivery),
  id: delivery.id,
});

export function register(program: Command): void {
  const webhooks = program
    .command('webhooks')
    .description('Send fleet events to HTTP receivers, signed (admin only)')
    .addHelpText(
      'after',
      `
Events: ${WEBHOOK_EVENT_TYPES.join(', ')}

Each delivery is a POST with a JSON body {id, type, at, data} and the headers X-Boardfleet-Event,
X-Boardfleet-Delivery (the same on retries) and X-Boardfleet-Signature: sha256=<hex HMAC-SHA-256 of
the raw body under the webhook's secret>. A receiver answers 2xx; anything else is retried.

Examples:
  boardfleet webhooks add https://hooks.example.com/fleet --events device.offline,rollout.paused
  boardfleet webhooks list
  boardfleet webhooks deliveries wh-…
  boardfleet webhooks remove wh-…`,
    );

  webhooks
    .command('add <url>')
    .description('Add a webhook; prints its secret, shown only this once')
    .requiredOption('--events <events>', 'comma-separated event types')
    .option('--json', 'machine-readable output')
    .action(async (url: string, options: { events: string; json?: boolean }) => {
      const created = await ApiClient.fromEnvironment().request<CreatedWebhook>('POST', '/api/v1/webhooks', {
        url,
        events: eventList(options.events),
      });
      if (options.json) return printJson(created);
      process.stdout.write(
        `Webhook ${created.id} → ${created.url} (${created.events.join(', ')})\n` +
          `Secret: ${created.secret}\n` +
          `It will not be shown again: give it to the receiver to check X-Boardfleet-Signature.\n`,
      );
    });

  webhooks
    .command('list')
    .description('List webhooks with their events; never their secrets')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const { webhooks: list } = await ApiClient.fromEnvironment().request<WebhookList>(
        'GET',
        '/api/v1/webhooks',
      );
      if (options.json) return printJson(list);
      printTable(list.map(webhookRow), ['id', 'url', 'events', 'created', 'by']);
    });

  webhooks
    .command('remove <id>')
    .description('Remove a webhook with its deliveries; nothing more is sent to it')
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { json?: boolean }) => {
      const removed = await ApiClient.fromEnvironment().request<Webhook>(
        'DELETE',
        `/api/v1/webhooks/${encodeURIComponent(id)}`,
      );
      if (options.json) return printJson(removed);
      process.stdout.write(`Removed webhook ${removed.id} (${removed.url})\n`);
    });

  webhooks
    .command('deliveries <id>')
    .description("A webhook's deliveries, newest first: time, event, status, attempts, last status or error")
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'machine-readable output (with every attempt and the body sent)')
    .action(async (id: string, options: { limit: string; json?: boolean }) => {
      const limit = Number(options.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500)
        throw new BoardfleetError(
          'invalid-option',
          `--limit ${options.limit}: expected a whole number from 1 to 500`,
        );
      const { deliveries } = await ApiClient.fromEnvironment().request<WebhookDeliveryList>(
        'GET',
        `/api/v1/webhooks/${encodeURIComponent(id)}/deliveries?limit=${limit}`,
      );
      if (options.json) return printJson(deliveries);
      printTable(deliveries.map(deliveryRow), ['time', 'event', 'status', 'attempts', 'last', 'id']);
    });
}
