import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StoredHealth } from '../../protocol/api/devices.ts';
import type { BuildQueueService } from '../builds/build-queue.service.ts';
import { ChangeFeed } from '../cluster/change-feed.ts';
import type { RolloutEngine } from '../rollouts/rollout-engine.ts';
import type { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import type { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import { type LiveEvent, LiveEventsService, ROLLOUT_EVENT_INTERVAL_MS } from './live-events.service.ts';
import type { RolloutProgressRepository } from '../rollouts/rollout-progress.repository.ts';

/** The other replicas, as this one sees them: what it published, and a way to hear from them. */
class FeedDouble extends ChangeFeed {
  readonly published: Array<{ change: unknown; coalesce?: string }> = [];
  publish(change: unknown, coalesce?: string): void {
    this.published.push(coalesce === undefined ? { change } : { change, coalesce });
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  fromAnotherReplica(change: unknown): void {
    this.emit('change', change);
  }
}

const sample = (receivedAt: number): StoredHealth => ({
  at: receivedAt,
  receivedAt,
  uptimeSeconds: 1,
  load: [0, 0, 0],
  memory: { totalBytes: 1, availableBytes: 1 },
  disk: { totalBytes: 1, freeBytes: 1 },
  cpuTemperatureCelsius: null,
  agentRssBytes: 1,
});

describe('LiveEventsService', () => {
  let ingest: EventEmitter;
  let engine: EventEmitter;
  let builds: EventEmitter;
  let reads: number;
  let service: LiveEventsService;
  let received: LiveEvent[];
  let feed: FeedDouble;
  let healthReads: Array<{ deviceIds: readonly string[]; from: number; to: number }>;

  beforeEach(() => {
    vi.useFakeTimers();
    ingest = new EventEmitter();
    engine = new EventEmitter();
    builds = new EventEmitter();
    reads = 0;
    const progress = {
      progress: async (rolloutId: string) => ({
        rolloutId,
        state: 'running',
        reason: null,
        waves: [],
        read: ++reads,
      }),
    } as unknown as RolloutProgressRepository;
    feed = new FeedDouble();
    healthReads = [];
    const telemetry = {
      healthReceivedBetween: async (deviceIds: readonly string[], from: number, to: number) => {
        healthReads.push({ deviceIds, from, to });
        return deviceIds.map((deviceId) => ({ deviceId, sample: sample(from) }));
      },
    } as unknown as TelemetryRepository;
    service = new LiveEventsService(
      ingest as TelemetryIngestService,
      engine as unknown as RolloutEngine,
      builds as unknown as BuildQueueService,
      progress,
      telemetry,
      feed,
      { now: () => Date.now() },
    );
    service.onModuleInit();
    received = [];
  });

  afterEach(() => {
    service.onModuleDestroy();
    vi.useRealTimers();
  });

  const rolloutEvents = () => received.filter((event) => event.type === 'rollout');

  it('sends hello first, then what the sources report, with increasing ids', () => {
    service.subscribe((event) => received.push(event));
    ingest.emit('presence-changed', 'dev-1', true);
    builds.emit('status', { id: 'build-1', state: 'running' });
    expect(received.map((event) => event.type)).toEqual(['hello', 'presence', 'build']);
    expect(received[1]?.data).toEqual({ deviceId: 'dev-1', online: true });
    expect(received.map((event) => event.id)).toEqual([1, 2, 3]);
  });

  it('sends a burst of rollout changes at once, then at most once per interval, with the latest state', async () => {
    service.subscribe((event) => received.push(event));
    for (let i = 0; i < 50; i++) engine.emit('rollout-changed', 'ro-1');
    await vi.advanceTimersByTimeAsync(0);
    expect(rolloutEvents()).toHaveLength(1);

    // One change every 10 ms for a second: 4 events a second at most, and the last change is sent.
    for (let elapsed = 0; elapsed < 1_000; elapsed += 10) {
      engine.emit('rollout-changed', 'ro-1');
      await vi.advanceTimersByTimeAsync(10);
    }
    await vi.advanceTimersByTimeAsync(ROLLOUT_EVENT_INTERVAL_MS);
    expect(rolloutEvents().length).toBeLessThanOrEqual(1 + 1_000 / ROLLOUT_EVENT_INTERVAL_MS + 1);
    expect(rolloutEvents().length).toBeGreaterThanOrEqual(4);
    expect(rolloutEvents().at(-1)?.data).toMatchObject({ rolloutId: 'ro-1', read: reads });
  });

  it('throttles each rollout on its own, and reads nothing while no one listens', async () => {
    engine.emit('rollout-changed', 'ro-1');
    await vi.advanceTimersByTimeAsync(ROLLOUT_EVENT_INTERVAL_MS);
    expect(reads).toBe(0);
    service.subscribe((event) => received.push(event));
    engine.emit('rollout-changed', 'ro-1');
    engine.emit('rollout-changed', 'ro-2');
    await vi.advanceTimersByTimeAsync(0);
    expect(rolloutEvents().map((event) => (event.data as { rolloutId: string }).rolloutId)).toEqual([
      'ro-1',
      'ro-2',
    ]);
  });

  it('stops sending to a subscriber that left', () => {
    const unsubscribe = service.subscribe((event) => received.push(event));
    unsubscribe();
    ingest.emit('presence-changed', 'dev-1', false);
    expect(received.map((event) => event.type)).toEqual(['hello']);
  });

  describe('with other replicas', () => {
    const health = { at: 1, uptimeSeconds: 1, load: [0, 0, 0], memory: {}, disk: {} };

    it("tells them this replica's changes, with or without subscribers here, a rollout's only by its latest notice", () => {
      ingest.emit('presence-changed', 'dev-1', true);
      ingest.emit('device-event', 'dev-1', { id: 'e1', at: 5, type: 'boot' });
      builds.emit('status', { id: 'build-1', state: 'running' });
      engine.emit('rollout-changed', 'ro-1');
      ingest.emit('health-stored', [
        { deviceId: 'dev-1', health, receivedAt: 100 },
        { deviceId: 'dev-2', health, receivedAt: 130 },
        { deviceId: 'dev-1', health, receivedAt: 160 },
      ]);
      expect(feed.published).toEqual([
        { change: { type: 'presence', data: { deviceId: 'dev-1', online: true } } },
        {
          change: {
            type: 'device-event',
            data: { deviceId: 'dev-1', event: { id: 'e1', at: 5, type: 'boot' } },
          },
        },
        { change: { type: 'build', data: { job: { id: 'build-1', state: 'running' } } } },
        { change: { type: 'rollout', data: { rolloutId: 'ro-1' } }, coalesce: 'rollout:ro-1' },
        { change: { type: 'health', data: { deviceIds: ['dev-1', 'dev-2'], from: 100, to: 160 } } },
      ]);
    });

    it("sends the others' changes to subscribers as its own, reading a rollout's snapshot here", async () => {
      service.subscribe((event) => received.push(event));
      feed.fromAnotherReplica({ type: 'presence', data: { deviceId: 'dev-9', online: false } });
      feed.fromAnotherReplica({ type: 'rollout', data: { rolloutId: 'ro-7' } });
      await vi.advanceTimersByTimeAsync(0);
      expect(received.map((event) => [event.type, event.data])).toEqual([
        ['hello', expect.anything()],
        ['presence', { deviceId: 'dev-9', online: false }],
        ['rollout', expect.objectContaining({ rolloutId: 'ro-7', read: 1 })],
      ]);
    });

    it('drops a change that is not one, and goes on with the next', () => {
      service.subscribe((event) => received.push(event));
      for (const junk of [
        null,
        42,
        { type: 'presence' },
        { type: 'nuke', data: {} },
        { type: 'presence', data: { deviceId: 7 } },
      ])
        feed.fromAnotherReplica(junk);
      feed.fromAnotherReplica({ type: 'presence', data: { deviceId: 'dev-1', online: true } });
      expect(received.map((event) => event.type)).toEqual(['hello', 'presence']);
    });

    it("reads another replica's health samples only for the devices a subscriber wants", async () => {
      const announce = () =>
        feed.fromAnotherReplica({
          type: 'health',
          data: { deviceIds: ['dev-1', 'dev-2'], from: 10, to: 20 },
        });
      announce();
      await service.remoteHealthSent();
      expect(healthReads).toEqual([]);

      const one: LiveEvent[] = [];
      const unsubscribe = service.subscribe((event) => one.push(event), { health: 'dev-2' });
      service.subscribe((event) => received.push(event), { health: 'none' });
      announce();
      await service.remoteHealthSent();
      expect(healthReads).toEqual([{ deviceIds: ['dev-2'], from: 10, to: 20 }]);
      expect(one.filter((event) => event.type === 'health').map((event) => event.data)).toEqual([
        { deviceId: 'dev-2', sample: sample(10) },
      ]);
      expect(received.map((event) => event.type)).toEqual(['hello']);

      unsubscribe();
      service.subscribe((event) => received.push(event));
      announce();
      await service.remoteHealthSent();
      expect(healthReads.at(-1)?.deviceIds).toEqual(['dev-1', 'dev-2']);
    });

    it('tells every subscriber to read its snapshots again when the feed may have missed changes', () => {
      const other: LiveEvent[] = [];
      service.subscribe((event) => received.push(event));
      service.subscribe((event) => other.push(event));
      feed.emit('resync');
      expect(received.map((event) => event.type)).toEqual(['hello', 'hello']);
      expect(other.map((event) => event.type)).toEqual(['hello', 'hello']);
    });
  });

  it("sends health events of the device a subscriber chose, or none, or every device's", () => {
    const all: LiveEvent[] = [];
    const none: LiveEvent[] = [];
    const one: LiveEvent[] = [];
    service.subscribe((event) => all.push(event));
    service.subscribe((event) => none.push(event), { health: 'none' });
    service.subscribe((event) => one.push(event), { health: 'dev-2' });
    const health = { at: 1, uptimeSeconds: 1, load: [0, 0, 0], memory: {}, disk: {} };
    ingest.emit('health-stored', [
      { deviceId: 'dev-1', health, receivedAt: 1 },
      { deviceId: 'dev-2', health, receivedAt: 2 },
    ]);
    const healthOf = (events: LiveEvent[]) =>
      events
        .filter((event) => event.type === 'health')
        .map((event) => (event.data as { deviceId: string }).deviceId);
    expect(healthOf(all)).toEqual(['dev-1', 'dev-2']);
    expect(healthOf(none)).toEqual([]);
    expect(healthOf(one)).toEqual(['dev-2']);
  });
});
