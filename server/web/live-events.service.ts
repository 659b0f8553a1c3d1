import { Inject, Injectable, Logger, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { BuildJob } from '../../protocol/api/builds.ts';
import type { LiveEvents, LiveEventType, LiveQuery } from '../../protocol/api/live.ts';
import type { DeviceEvent } from '../../protocol/schemas.ts';
import { BuildQueueService } from '../builds/build-queue.service.ts';
import { ChangeFeed } from '../cluster/change-feed.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { RolloutEngine } from '../rollouts/rollout-engine.ts';
import { type HealthToStore, TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import { RolloutProgressRepository } from '../rollouts/rollout-progress.repository.ts';
import { healthChanges, liveChangeSchema } from './live-changes.ts';
import { RemoteHealthReader } from './remote-health.ts';

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

/** `health` as the stream's query says: every device's (undefined), none ('none'), or one device's. */
type HealthWanted = LiveQuery['health'];

const wantsHealth = (wanted: HealthWanted, deviceId: string) =>
  wanted === undefined || (wanted !== 'none' && wanted === deviceId);

/**
 * Fans the server's own change notifications (telemetry ingest, rollout engine, build queue) out
 * to the dashboards that are connected, and those of the other server replicas, which arrive
 * through the change feed (each replica publishes its own there). Nothing is buffered for a client
 * that is not connected: after a (re)connect the client reads its snapshots again, then applies
 * events; it is told to do so (`hello`) when the feed may have missed changes, too.
 */
@Injectable()
export class LiveEventsService implements OnModuleInit, OnModuleDestroy {
  private nextId = 1;
  private readonly subscribers = new Map<Subscriber, HealthWanted>();
  private readonly pendingRollouts = new Map<string, NodeJS.Timeout>();
  private readonly rolloutSentAt = new Map<string, number>();
  /** Rollout snapshots are read one at a time, so they go out in the order they were read. */
  private snapshots: Promise<void> = Promise.resolve();
  private readonly detach: Array<() => void> = [];
  private readonly logger = new Logger(LiveEventsService.name);
  private readonly remoteHealth: RemoteHealthReader;

  constructor(
    @Inject(TelemetryIngestService) private readonly ingest: TelemetryIngestService,
    @Inject(RolloutEngine) private readonly engine: RolloutEngine,
    @Inject(BuildQueueService) private readonly builds: BuildQueueService,
    @Inject(RolloutProgressRepository) private readonly progress: RolloutProgressRepository,
    @Inject(TelemetryRepository) telemetry: TelemetryRepository,
    @Inject(ChangeFeed) private readonly feed: ChangeFeed,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {
    this.remoteHealth = new RemoteHealthReader(
      telemetry,
      (deviceId, sample) => this.publish('health', { deviceId, sample }),
      (error) => this.logger.error({ err: error }, "reading another replica's health samples failed"),
    );
  }

  onModuleInit(): void {
    const onPresence = (deviceId: string, online: boolean) => this.local('presence', { deviceId, online });
    const onHealth = (samples: HealthToStore[]) => {
      for (const change of healthChanges(samples)) this.feed.publish(change);
      for (const { deviceId, health, receivedAt } of samples)
        this.publish('health', { deviceId, sample: { ...health, receivedAt } });
    };
    const onDeviceEvent = (deviceId: string, event: DeviceEvent) =>
      this.local('device-event', { deviceId, event });
    const onRollout = (rolloutId: string) => {
      // The others read the snapshot themselves: only the latest notice of a rollout matters.
      this.feed.publish({ type: 'rollout', data: { rolloutId } }, `rollout:${rolloutId}`);
      this.rolloutChanged(rolloutId);
    };
    const onBuild = (job: BuildJob) => this.local('build', { job });
    const onRemote = (change: unknown) => this.remoteChange(change);
    const onResync = () => this.sayHello();
    this.ingest.on('presence-changed', onPresence);
    this.ingest.on('health-stored', onHealth);
    this.ingest.on('device-event', onDeviceEvent);
    this.engine.on('rollout-changed', onRollout);
    this.builds.on('status', onBuild);
    this.feed.on('change', onRemote);
    this.feed.on('resync', onResync);
    this.detach.push(
      () => this.ingest.off('presence-changed', onPresence),
      () => this.ingest.off('health-stored', onHealth),
      () => this.ingest.off('device-event', onDeviceEvent),
      () => this.engine.off('rollout-changed', onRollout),
      () => this.builds.off('status', onBuild),
      () => this.feed.off('change', onRemote),
      () => this.feed.off('resync', onResync),
    );
  }

  onModuleDestroy(): void {
    for (const detach of this.detach.splice(0)) detach();
    for (const timer of this.pendingRollouts.values()) clearTimeout(timer);
    this.pendingRollouts.clear();
  }

  /**
   * Adds a subscriber, with the health events it wants (every device's unless `health` says
   * otherwise), and sends it `hello` first; returns how to unsubscribe.
   */
  subscribe(subscriber: Subscriber, { health }: LiveQuery = {}): () => void {
    this.subscribers.set(subscriber, health);
    subscriber({ id: this.nextId++, type: 'hello', data: { serverTime: this.clock.now() } });
    return () => this.subscribers.delete(subscriber);
  }

  /** Resolves once the health samples other replicas announced so far have been sent (tests). */
  remoteHealthSent(): Promise<void> {
    return this.remoteHealth.idle();
  }

  /** A change made here: the other replicas hear of it, this one's subscribers get it. */
  private local<Type extends 'presence' | 'device-event' | 'build'>(
    type: Type,
    data: LiveEvents[Type],
  ): void {
    this.feed.publish({ type, data });
    this.publish(type, data);
  }

  /** A change another replica made, sent here as if it were this one's own. */
  private remoteChange(value: unknown): void {
    const change = liveChangeSchema.safeParse(value);
    if (!change.success) {
      this.logger.warn(
        { issues: change.error.issues.slice(0, 3) },
        'a change from another replica was dropped',
      );
      return;
    }
    switch (change.data.type) {
      case 'presence':
        return this.publish('presence', change.data.data);
      case 'device-event':
        return this.publish('device-event', change.data.data);
      case 'build':
        return this.publish('build', change.data.data);
      case 'rollout':
        return this.rolloutChanged(change.data.data.rolloutId);
      case 'health': {
        const { deviceIds, from, to } = change.data.data;
        return this.remoteHealth.add(this.healthWanted(deviceIds), from, to);
      }
    }
  }

  /** The devices among these whose health some subscriber wants: reading the others' would be wasted. */
  private healthWanted(deviceIds: readonly string[]): readonly string[] {
    const wanted = new Set<string>();
    for (const health of this.subscribers.values()) {
      if (health === undefined) return deviceIds;
      if (health !== 'none') wanted.add(health);
    }
    return wanted.size === 0 ? [] : deviceIds.filter((deviceId) => wanted.has(deviceId));
  }

  /** Tells every subscriber to read its snapshots again: the feed may have missed changes. */
  private sayHello(): void {
    for (const subscriber of this.subscribers.keys())
      subscriber({ id: this.nextId++, type: 'hello', data: { serverTime: this.clock.now() } });
  }

  private publish<Type extends LiveEventType>(type: Type, data: LiveEvents[Type]): void {
    if (this.subscribers.size === 0) return;
    const event: LiveEvent<Type> = { id: this.nextId++, type, data };
    const deviceId = type === 'health' ? (data as LiveEvents['health']).deviceId : null;
    for (const [subscriber, health] of this.subscribers)
      if (deviceId === null || wantsHealth(health, deviceId)) subscriber(event);
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
