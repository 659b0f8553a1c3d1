import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { decodePayload } from '../../protocol/codec.ts';
import type { DeviceEvent } from '../../protocol/schemas.ts';
import { type Channel, parseDeviceTopic } from '../../protocol/topics.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { HealthToStore, TelemetryRepository } from './telemetry.repository.ts';

/** Heartbeats are written in batches: one transaction per tick instead of one per message. */
const HEALTH_FLUSH_INTERVAL_MS = 100;
const HEALTH_FLUSH_MAX_ROWS = 2_000;

export interface IngestEvents {
  /** Emitted after a batch of health samples is committed (benchmarks measure latency with it). */
  'health-stored': [samples: HealthToStore[]];
  'presence-changed': [deviceId: string, online: boolean];
  /** Emitted once an event is stored (a redelivered one too: listeners must be idempotent). */
  'device-event': [deviceId: string, event: DeviceEvent];
}

/**
 * Turns device messages into stored state. Each message is decoded against the protocol schema;
 * an invalid one is counted, logged with its reason and dropped.
 */
export class TelemetryIngestService extends EventEmitter<IngestEvents> {
  private healthBuffer: HealthToStore[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();
  /** Presence, inventory and events are applied in arrival order, one at a time. */
  private ordered: Promise<void> = Promise.resolve();

  constructor(
    private readonly telemetry: TelemetryRepository,
    private readonly metrics: ServerMetrics,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
  }

  handleMessage(topic: string, payload: Buffer): void {
    const parsed = parseDeviceTopic(topic);
    if (!parsed) {
      this.reject('unknown', 'topic', `not a device topic: ${topic}`, topic);
      return;
    }
    const { deviceId, channel } = parsed;
    this.metrics.messagesReceived.inc({ channel });
    const receivedAt = this.now();
    switch (channel) {
      case 'health': {
        const decoded = decodePayload('health', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        this.healthBuffer.push({ deviceId, health: decoded.value, receivedAt });
        if (this.healthBuffer.length >= HEALTH_FLUSH_MAX_ROWS) void this.flushHealth();
        else this.flushTimer ??= setTimeout(() => void this.flushHealth(), HEALTH_FLUSH_INTERVAL_MS);
        return;
      }
      case 'presence': {
        const decoded = decodePayload('presence', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        this.inOrder(async () => {
          if (await this.telemetry.recordPresence(deviceId, decoded.value, receivedAt)) {
            this.logger.info(
              { deviceId, state: decoded.value.state, reason: decoded.value.reason },
              'presence changed',
            );
            this.emit('presence-changed', deviceId, decoded.value.state === 'online');
          }
        });
        return;
      }
      case 'inventory': {
        const decoded = decodePayload('inventory', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        this.inOrder(() => this.telemetry.recordInventory(deviceId, decoded.value, receivedAt));
        return;
      }
      case 'events': {
        const decoded = decodePayload('events', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        this.inOrder(async () => {
          await this.telemetry.insertEvent(deviceId, decoded.value, receivedAt);
          this.emit('device-event', deviceId, decoded.value);
        });
        return;
      }
      default:
        // The server publishes desired/commands itself; it does not ingest them.
        return;
    }
  }

  private inOrder(work: () => Promise<void>): void {
    this.ordered = this.ordered.then(work).catch((error: unknown) => {
      this.logger.error({ err: error }, 'storing a device message failed');
    });
  }

  private reject(channel: Channel | 'unknown', reason: string, detail: string, topic: string): void {
    this.metrics.invalidPayloads.inc({ channel, reason });
    this.logger.warn({ topic, reason, detail }, 'invalid payload dropped');
  }

  flushHealth(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const batch = this.healthBuffer;
    this.healthBuffer = [];
    if (batch.length === 0) return this.flushing;
    this.flushing = this.flushing
      .then(() => this.telemetry.insertHealth(batch))
      .then(
        () => {
          this.emit('health-stored', batch);
        },
        (error: unknown) => this.logger.error({ err: error, samples: batch.length }, 'storing health failed'),
      );
    return this.flushing;
  }

  /** Waits until everything received so far is stored (shutdown, tests). */
  async drain(): Promise<void> {
    await this.flushHealth();
    await this.ordered;
  }
}
