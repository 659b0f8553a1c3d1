import { randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  type CreatedWebhook,
  type CreateWebhook,
  isWebhookEventType,
  type Webhook,
  type WebhookDelivery,
  WEBHOOK_EVENT_TYPES,
  type WebhookEventType,
} from '../../protocol/api/webhooks.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { notFound } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import { WebhookEvents } from './webhook-events.ts';
import { type StoredWebhook, WebhookRepository } from './webhook.repository.ts';

/** The webhooks an admin adds, lists and removes, and what was delivered to each. */
@Injectable()
export class WebhookService {
  constructor(
    @Inject(WebhookRepository) private readonly webhooks: WebhookRepository,
    @Inject(WebhookEvents) private readonly events: WebhookEvents,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Adds a webhook; the answer is the only one that carries its secret. */
  async create(input: CreateWebhook, by: string): Promise<CreatedWebhook> {
    const webhook: StoredWebhook = {
      id: generateId('wh'),
      url: webhookUrl(input.url),
      events: webhookEvents(input.events),
      secret: `bfw_${randomBytes(32).toString('base64url')}`,
      createdAt: this.clock.now(),
      createdBy: by,
    };
    await this.webhooks.create(webhook);
    this.events.forgetWebhooks();
    return webhook;
  }

  async list(): Promise<Webhook[]> {
    return (await this.webhooks.list()).map(withoutSecret);
  }

  async delete(id: string): Promise<Webhook> {
    const webhook = await this.webhooks.get(id);
    if (!webhook || !(await this.webhooks.delete(id))) throw notFound(`webhook ${id}`);
    this.events.forgetWebhooks();
    return withoutSecret(webhook);
  }

  async deliveries(id: string, limit: number): Promise<WebhookDelivery[]> {
    if (!(await this.webhooks.get(id))) throw notFound(`webhook ${id}`);
    return this.webhooks.deliveries(id, limit);
  }
}

const withoutSecret = ({ secret: _secret, ...webhook }: StoredWebhook): Webhook => webhook;

/** The URL as given, once it parses as http(s). */
export function webhookUrl(url: string): string {
  let protocol: string | null = null;
  try {
    protocol = new URL(url).protocol;
  } catch {
    protocol = null;
  }
  if (protocol !== 'http:' && protocol !== 'https:')
    throw new BoardfleetError(
      'invalid-webhook-url',
      `webhook URLs must be http:// or https:// (got ${url.length > 80 ? `${url.slice(0, 79)}…` : url})`,
    );
  return url;
}

/** The event types asked for, each once; an unknown one is refused with the list of valid ones. */
export function webhookEvents(events: readonly string[]): WebhookEventType[] {
  const unknown = events.filter((event) => !isWebhookEventType(event));
  if (unknown.length > 0)
    throw new BoardfleetError(
      'invalid-webhook',
      `unknown webhook event${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}: use ${WEBHOOK_EVENT_TYPES.join(', ')}`,
    );
  return [...new Set(events as WebhookEventType[])];
}
