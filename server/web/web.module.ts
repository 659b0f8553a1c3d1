import { type DynamicModule, Module, type Provider } from '@nestjs/common';
import { LiveController } from './live.controller.ts';
import { LiveEventsService } from './live-events.service.ts';
import { RolloutProgressRepository } from '../rollouts/rollout-progress.repository.ts';
import { SessionController } from './session.controller.ts';
import { WebController } from './web.controller.ts';

/**
 * The dashboard: who is signed in, the live event stream, and the built app itself. Imported last, so the app's
 * catch-all route is registered after every API route.
 */
@Module({})
export class WebModule {
  /** `values` are the server's long-lived parts (ingest, rollout engine, build queue, database, web directory). */
  static forRoot(values: Provider[]): DynamicModule {
    return {
      module: WebModule,
      controllers: [SessionController, LiveController, WebController],
      providers: [...values, LiveEventsService, RolloutProgressRepository],
    };
  }
}
