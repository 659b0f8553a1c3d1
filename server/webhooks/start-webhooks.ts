import type { Logger } from 'pino';
import type { Clock } from '../common/clock.ts';
import type { Database } from '../db/database.ts';
import type { RolloutEngine } from '../rollouts/rollout-engine.ts';
import type { RolloutRepository } from '../rollouts/rollout.repository.ts';
import type { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import type { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import { watchFleetEvents } from './fleet-events.ts';
import { WebhookDispatcher } from './webhook-dispatcher.ts';
import { WebhookEvents } from './webhook-events.ts';
import { WebhookRepository } from './webhook.repository.ts';

export interface RunningWebhooks {
  /** The queue's entrance (the API tells it when the webhook list changed). */
  events: WebhookEvents;
  dispatcher: WebhookDispatcher;
  stop(): Promise<void>;
}

/**
 * Starts webhooks: fleet events from the ingest and the rollout engine are queued in the
 * database and sent by the dispatcher, which first picks up what a previous run left pending.
 */
export function startWebhooks(options: {
  db: Database;
  ingest: TelemetryIngestService;
  engine: RolloutEngine;
  rollouts: RolloutRepository;
  telemetry: TelemetryRepository;
  clock: Clock;
  logger: Logger;
  retryBaseSeconds: number;
}): RunningWebhooks {
  const repository = new WebhookRepository(options.db);
  const dispatcher = new WebhookDispatcher({
    deliveries: repository,
    clock: options.clock,
    logger: options.logger,
    retryBaseSeconds: options.retryBaseSeconds,
  });
  const events = new WebhookEvents(repository, options.clock, options.logger, () => dispatcher.wake());
  const unwatch = watchFleetEvents({ ...options, now: () => options.clock.now() }, (event) =>
    events.publish(event),
  );
  dispatcher.start();
  return {
    events,
    dispatcher,
    async stop() {
      unwatch();
      await events.flush();
      await dispatcher.stop();
    },
  };
}
