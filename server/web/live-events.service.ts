import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { LiveEvents, LiveEventType } from '../../protocol/api/live.ts';
import type { DeviceEvent } from '../../protocol/schemas.ts';
import { BuildQueueService } from '../builds/build-queue.service.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { RolloutEngine } from '../rollouts/rollout-engine.ts';
import type { HealthToStore } from '../telemetry/telemetry.repository.ts';
import { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import { RolloutProgressRepository } from '../rollouts/rollout-progress.repository.ts';

/** A rollout's progress goes out at most this often (4 a second), however fast its devices report. */
export const ROLLOUT_EVENT_INTERVAL_MS = 250;

/** One event of the stream; its `data` is what protocol/api/live.ts declares for its type. */
export interface LiveEvent<Type extends LiveEventType = LiveEventType> {
  /** Increasing within a server process; it orders events, it does not resume a stream. */
  id: number;
  type: Type;
  data: LiveEvents[Type];
}

type Subscriber = (event: LiveEvent) => void;

/**
 * Fans the server's own change notifications (telemetry ingest, rollout engine, build queue) out
 * to the dashboards that are connected. Nothing is buffered for a client that is not connected:
 * after a (re)connect the client reads its snapshots again, then applies events.
 */
@Injectable()
export class LiveEventsService implements OnModuleInit, OnModuleDestroy {
  private nextId = 1;
  private readonly subscribers = new Set<Subscriber>();
  private readonly pendingRollouts = new Map<string, NodeJS.Timeout>();
  private readonly rolloutSentAt = new Map<string, number>();
  /** Rollout snapshots are read one at a time, so they go out in the order they were read. */
  private snapshots: Promise<void> = Promise.resolve();
  private readonly detach: Array<() => void> = [];
  private readonly logger = new Logger(LiveEventsService.name);

  constructor(
    @Inject(TelemetryIngestService) private readonly ingest: TelemetryIngestService,
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(BuildQueueService) private readonly builds: BuildQueueService,
    @Inject(RolloutProgressRepository) private readonly progress: RolloutProgressRepository,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    const onPresence = (deviceId: string, online: boolean) => this.publish('presence', { deviceId, online });
    const onHealth = (samples: HealthToStore[]) => {
      for (const { deviceId, health, receivedAt } of samples)
        this.publish('health', { deviceId, sample: { ...health, receivedAt } });
    };
    const onDeviceEvent = (deviceId: string, event: DeviceEvent) =>
      this.publish('device-event', { deviceId, event });
    const onRollout = (rolloutId: string) => this.rolloutChanged(rolloutId);
    const onBuild = (job: BuildJob) => this.publish('build', { job });
    this.ingest.on('presence-changed', onPresence);
    this.ingest.on('health-stored', onHealth);
    this.ingest.on('device-event', onDeviceEvent);
    this.engine.on('rollout-changed', onRollout);
    this.builds.on('status', onBuild);
    this.detach.push(
      () => this.ingest.off('presence-changed', onPresence),
      () => this.ingest.off('health-stored', onHealth),
      () => this.ingest.off('device-event', onDeviceEvent),
      () => this.engine.off('rollout-changed', onRollout),
      () => this.builds.off('status', onBuild),
    );
  }

  onModuleDestroy(): void {
    for (const detach of this.detach.splice(0)) detach();
    for (const timer of this.pendingRollouts.values()) clearTimeout(timer);
    this.pendingRollouts.clear();
  }

  /** Adds a subscriber and sends it `hello` first; returns how to unsubscribe. */
  subscribe(subscriber: Subscriber): () => void {
    this.subscribers.add(subscriber);
    subscriber({ id: this.nextId++, type: 'hello', data: { serverTime: this.clock.now() } });
    return () => this.subscribers.delete(subscriber);
  }

  private publish<Type extends LiveEventType>(type: Type, data: LiveEvents[Type]): void {
    if (this.subscribers.size === 0) return;
    const event: LiveEvent<Type> = { id: this.nextId++, type, data };
    for (const subscriber of this.subscribers) subscriber(event);
  }

  /** Leading and trailing: the first change goes out at once, a burst after it once per interval. */
  private rolloutChanged(rolloutId: string): void {
    if (this.subscribers.size === 0 || this.pendingRollouts.has(rolloutId)) return;
    const wait = Math.max(
      0,
      (this.rolloutSentAt.get(rolloutId) ?? 0) + ROLLOUT_EVENT_INTERVAL_MS - this.clock.now(),
    );
    const timer = setTimeout(() => {
      this.snapshots = this.snapshots.then(async () => {
        // Cleared first: a change made while the snapshot is read schedules the next one.
        this.pendingRollouts.delete(rolloutId);
        this.rolloutSentAt.set(rolloutId, this.clock.now());
        const progress = await this.progress.progress(rolloutId).catch((error: unknown) => {
          this.logger.error({ err: error, rolloutId }, 'reading rollout progress for the live stream failed');
          return null;
        });
        if (progress) this.publish('rollout', progress);
        if (progress?.state === 'completed' || progress?.state === 'aborted')
          this.rolloutSentAt.delete(rolloutId);
      });
    }, wait);
    timer.unref();
    this.pendingRollouts.set(rolloutId, timer);
  }
}
