import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { WebhookRepository } from './webhook.repository.ts';
import { WebhookService } from './webhook.service.ts';
import { WebhooksController } from './webhooks.controller.ts';

/** Webhooks: admins register receivers, the server POSTs them fleet events (see start-webhooks.ts). */
@Module({})
export class WebhooksModule {
  /** `values` are the server's long-lived parts: the database, the clock and the running webhooks' WebhookEvents. */
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: WebhooksModule,
      controllers: [WebhooksController],
      providers: [...values, WebhookRepository, WebhookService],
    };
  }
}
