import { Body, Controller, Inject, Param, Query, Req } from '@nestjs/common';
import { operations } from '../../protocol/api/operations.ts';
import {
  type CreatedWebhook,
  createWebhookBody,
  type Webhook,
  type WebhookDeliveryList,
  webhookDeliveriesQuery,
  type WebhookList,
} from '../../protocol/api/webhooks.ts';
import type { AuthenticatedRequest } from '../auth/operator-auth.guard.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { WebhookService } from './webhook.service.ts';

@Controller()
export class WebhooksController {
  constructor(@Inject(WebhookService) private readonly webhooks: WebhookService) {}

  @ApiRoute(operations.createWebhook)
  async create(@Body() body: unknown, @Req() request: AuthenticatedRequest): Promise<CreatedWebhook> {
    return this.webhooks.create(parseBody(createWebhookBody, body), request.operator?.name ?? 'an operator');
  }

  @ApiRoute(operations.listWebhooks)
  async list(): Promise<WebhookList> {
    return { webhooks: await this.webhooks.list() };
  }

  @ApiRoute(operations.deleteWebhook)
  async delete(@Param('id') id: string): Promise<Webhook> {
    return this.webhooks.delete(id);
  }

  @ApiRoute(operations.listWebhookDeliveries)
  async deliveries(@Param('id') id: string, @Query() query: unknown): Promise<WebhookDeliveryList> {
    const { limit } = parseBody(webhookDeliveriesQuery, query);
    return { deliveries: await this.webhooks.deliveries(id, limit) };
  }
}
