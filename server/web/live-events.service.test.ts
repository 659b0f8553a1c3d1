import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BuildQueueService } from '../builds/build-queue.service.ts';
import type { RolloutEngine } from '../rollouts/rollout-engine.ts';
import type { TelemetryIngestService } from '../telemetry/telemetry-ingest.service.ts';
import { type LiveEvent, LiveEventsService, ROLLOUT_EVENT_INTERVAL_MS } from './live-events.service.ts';
import type { RolloutProgressRepository } from '../rollouts/rollout-progress.repository.ts';

describe('LiveEventsService', () => {
  let ingest: EventEmitter;
  let engine: EventEmitter;
  let builds: EventEmitter;
  let reads: number;
  let service: LiveEventsService;
  let received: LiveEvent[];

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
    service = new LiveEventsService(
      ingest as TelemetryIngestService,
      engine as unknown as RolloutEngine,
      builds as unknown as BuildQueueService,
      progress,
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
});
