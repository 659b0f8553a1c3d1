import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { decodePayload } from '../../protocol/codec.ts';
import type { DeviceEvent, Presence } from '../../protocol/schemas.ts';
import { type Channel, type DeviceToServerChannel, parseDeviceTopic } from '../../protocol/topics.ts';
import { KeyedQueue } from '../common/keyed-queue.ts';
import { type DatabaseHealth, isConnectionLoss } from '../db/database-health.ts';
import type { ServerMetrics, TelemetryDropReason } from '../metrics/metrics.ts';
import { BatchedWriter } from './batched-writer.ts';
import type { EventToStore, HealthToStore, TelemetryRepository } from './telemetry.repository.ts';

/** Heartbeats and events are written in batches: one transaction per tick instead of one per message. */
const HEALTH_FLUSH_INTERVAL_MS = 100;
const HEALTH_FLUSH_MAX_ROWS = 2_000;
/**
 * Events are written as they come, batched only while a write is under way: the broker has
 * acknowledged them to the device, so until stored they live only in this process.
 */
const EVENTS_FLUSH_INTERVAL_MS = 0;
const EVENTS_FLUSH_MAX_ROWS = 500;
/**
 * Heartbeats wait here while the database is away (about 20 MB at most); past this, newer ones
 * are dropped and counted, so an outage cannot exhaust the server's memory.
 */
const HEALTH_BUFFER_MAX_ROWS = 50_000;
/**
 * Presence, inventory and event messages waiting to be stored, together at most: room for a
 * fleet of 10,000 connecting at once (presence, inventory and an event or two each).
 */
const ORDERED_BUFFER_MAX = 40_000;
/**
 * Devices whose messages are written at once (each device's in order): PostgreSQL takes them on
 * several pooled connections, leaving the rest of its pool to rollouts and the API.
 */
const ORDERED_WRITERS = 4;
/**
 * A write that keeps losing its connection although the database answers pings is dropped after
 * this many tries, so it cannot hold up everything behind it.
 */
const MAX_WRITE_ATTEMPTS = 5;

export interface IngestEvents {
  /** Emitted after a batch of health samples is committed (benchmarks measure latency with it). */
  'health-stored': [samples: HealthToStore[]];
  /** `presence` is the message itself: its `at` tells one change from another (webhooks' keys). */
  'presence-changed': [deviceId: string, online: boolean, presence: Presence];
  /** Emitted once an event is stored (a redelivered one too: listeners must be idempotent). */
  'device-event': [deviceId: string, event: DeviceEvent];
}

/**
 * Turns device messages into stored state. Each message is decoded against the protocol schema;
 * an invalid one is counted, logged with its reason and dropped. While the database is away,
 * messages wait (bounded) and are written once it is back; what cannot wait is dropped and counted.
 */
export class TelemetryIngestService extends EventEmitter<IngestEvents> {
  private readonly health = new BatchedWriter<HealthToStore>({
    maxRows: HEALTH_FLUSH_MAX_ROWS,
    intervalMs: HEALTH_FLUSH_INTERVAL_MS,
    write: async (batch) => {
      if (await this.store('health', batch.length, () => this.telemetry.insertHealth(batch)))
        this.emit('health-stored', batch);
    },
  });
  /** Events in arrival order: each device's stay in order, and a report is applied after it is stored. */
  private readonly events = new BatchedWriter<EventToStore>({
    maxRows: EVENTS_FLUSH_MAX_ROWS,
    intervalMs: EVENTS_FLUSH_INTERVAL_MS,
    write: async (batch) => {
      if (await this.store('events', batch.length, () => this.telemetry.insertEvents(batch)))
        for (const { deviceId, event } of batch) this.emit('device-event', deviceId, event);
    },
  });
  /** Presence and inventory are applied in each device's arrival order. */
  private readonly ordered = new KeyedQueue(ORDERED_WRITERS);
  /** Aborted on stop: writes waiting for the database give up instead of holding up shutdown. */
  private readonly closing = new AbortController();
  private readonly fullBuffers = new Set<'health' | 'ordered'>();

  constructor(
    private readonly telemetry: TelemetryRepository,
    private readonly metrics: ServerMetrics,
    private readonly database: DatabaseHealth,
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
        if (this.bufferFull('health', this.health.size >= HEALTH_BUFFER_MAX_ROWS)) return;
        this.health.push({ deviceId, health: decoded.value, receivedAt });
        return;
      }
      case 'presence': {
        const decoded = decodePayload('presence', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        this.inOrder(channel, deviceId, async () => {
          if (await this.telemetry.recordPresence(deviceId, decoded.value, receivedAt)) {
            this.logger.info(
              { deviceId, state: decoded.value.state, reason: decoded.value.reason },
              'presence changed',
            );
            this.emit('presence-changed', deviceId, decoded.value.state === 'online', decoded.value);
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
        this.inOrder(channel, deviceId, () =>
          this.telemetry.recordInventory(deviceId, decoded.value, receivedAt),
        );
        return;
      }
      case 'events': {
        const decoded = decodePayload('events', payload);
        if (!decoded.ok) {
          this.reject(channel, decoded.reason, decoded.detail, topic);
          return;
        }
        if (this.bufferFull('ordered', this.orderedFull(), channel)) return;
        this.events.push({ deviceId, event: decoded.value, receivedAt });
        return;
      }
      default:
        // The server publishes desired/commands itself; it does not ingest them.
        return;
    }
  }

  private inOrder(channel: DeviceToServerChannel, deviceId: string, work: () => Promise<void>): void {
    if (this.bufferFull('ordered', this.orderedFull(), channel)) return;
    this.ordered.push(deviceId, async () => {
      await this.store(channel, 1, work);
    });
  }

  private orderedFull(): boolean {
    return this.ordered.size + this.events.size >= ORDERED_BUFFER_MAX;
  }

  /**
   * Writes, waiting for the database while it is away and retrying a write that lost its
   * connection; false when the write was given up (then counted as dropped).
   */
  private async store(
    channel: DeviceToServerChannel,
    rows: number,
    write: () => Promise<void>,
  ): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      if (!(await this.database.whenUp(this.closing.signal))) {
        this.drop(channel, 'shutdown', rows);
        return false;
      }
      try {
        await write();
        return true;
      } catch (error) {
        if (!isConnectionLoss(error) || attempt >= MAX_WRITE_ATTEMPTS) {
          this.drop(channel, 'write-failed', rows, error);
          return false;
        }
        // Let the watcher look before the next try: if the database is away, whenUp waits for it.
        await this.database.check();
      }
    }
  }

  /** Counts a message the buffer has no room for, logging once each time the buffer fills up. */
  private bufferFull(
    buffer: 'health' | 'ordered',
    full: boolean,
    channel: DeviceToServerChannel = 'health',
  ): boolean {
    if (!full) {
      this.fullBuffers.delete(buffer);
      return false;
    }
    if (!this.fullBuffers.has(buffer)) {
      this.fullBuffers.add(buffer);
      this.logger.warn(
        { buffer },
        'telemetry buffer full (the database is away or behind): dropping new messages',
      );
    }
    this.metrics.telemetryDropped.inc({ channel, reason: 'buffer-full' });
    return true;
  }

  private drop(
    channel: DeviceToServerChannel,
    reason: TelemetryDropReason,
    rows: number,
    error?: unknown,
  ): void {
    this.metrics.telemetryDropped.inc({ channel, reason }, rows);
    this.logger.error({ err: error, channel, rows, reason }, 'storing device messages failed: dropped');
  }

  private reject(channel: Channel | 'unknown', reason: string, detail: string, topic: string): void {
    this.metrics.invalidPayloads.inc({ channel, reason });
    this.logger.warn({ topic, reason, detail }, 'invalid payload dropped');
  }

  /** Writes the buffered heartbeats now. */
  flushHealth(): Promise<void> {
    return this.health.flush();
  }

  /** Waits until everything received so far is stored (tests; during an outage, until the database is back). */
  async drain(): Promise<void> {
    await Promise.all([this.health.flush(), this.events.flush(), this.ordered.idle()]);
  }

  /** Stores what it can: with the database away, what still waits is dropped and counted. */
  async stop(): Promise<void> {
    this.closing.abort();
    await this.drain();
  }
}
