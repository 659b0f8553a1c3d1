import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ServerMetrics } from '../metrics/metrics.ts';
import { decodePayload } from '../../protocol/codec.ts';
import type { LogLine, LogSource, LogWatch } from '../../protocol/device-logs.ts';
import type { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import type { Clock } from '../common/clock.ts';

/** Where a watch's events go: the HTTP stream of the operator who asked. */
export interface LogSink {
  line(line: LogLine): void;
  caughtUp(through: number): void;
  device(online: boolean): void;
  /** The last event: the relay has forgotten the watch. */
  error(code: string, message: string): void;
  /** The backlog of a watch that does not follow was sent: the relay has forgotten the watch. */
  end(): void;
}

/** What an operator asked for; `afterSeq`, else `sinceAt`, else `tail` says where the backlog starts. */
export interface LogRequest {
  sources?: LogSource[];
  /** The serial speed for a `board:<port>` source. */
  baud?: number;
  afterSeq?: number;
  sinceAt?: number;
  tail?: number;
  follow: boolean;
  /** Whether the device is online now (as the devices table says). */
  online: boolean;
}

export interface LogRelayOptions {
  publish: (deviceId: string, message: LogWatch) => Promise<void>;
  now: () => number;
  logger: Logger;
  /** How long the agent streams unless renewed (default 30 s), and how often it is renewed (10 s). */
  leaseMs?: number;
  renewMs?: number;
  /** How long an online device has to answer a start before the watch fails (default 15 s). */
  answerMs?: number;
  /** Counts a batch refused by the codec, as for every device channel. */
  metrics?: Pick<ServerMetrics, 'invalidPayloads'>;
}

interface Watch {
  readonly id: string;
  readonly deviceId: string;
  readonly request: LogRequest;
  readonly sink: LogSink;
  /** The newest sequence number relayed or skipped: resumes start after it, older lines are dropped. */
  lastSeq: number | null;
  online: boolean;
  renewTimer: NodeJS.Timeout;
  answerTimer: NodeJS.Timeout | null;
}

/**
 * The server's side of live logs. Each HTTP stream is a watch with its own id: the relay sends the
 * agent `start` (and again every few seconds, which renews the lease), relays the batches that
 * come back, and sends `stop` when the stream closes. A watch remembers the last sequence number
 * it relayed, so when the device comes back (an agent restart, a lost link) the new `start`
 * resumes after it, and a line that arrives twice is dropped. Every replica receives `logs`
 * batches; each relays only its own watches.
 */
export class LogRelay {
  private readonly watches = new Map<string, Watch>();
  private readonly leaseMs: number;
  private readonly renewMs: number;
  private readonly answerMs: number;

  constructor(private readonly options: LogRelayOptions) {
    this.leaseMs = options.leaseMs ?? 30_000;
    this.renewMs = options.renewMs ?? 10_000;
    this.answerMs = options.answerMs ?? 15_000;
  }

  /** Opens a watch; the function returned closes it (the HTTP client went away). */
  open(deviceId: string, request: LogRequest, sink: LogSink): () => void {
    const watch: Watch = {
      id: randomBytes(8).toString('hex'),
      deviceId,
      request,
      sink,
      lastSeq: null,
      online: request.online,
      renewTimer: setInterval(() => {
        if (watch.online) this.send(watch, 'start');
      }, this.renewMs),
      answerTimer: null,
    };
    watch.renewTimer.unref();
    this.watches.set(watch.id, watch);
    if (watch.online) this.begin(watch);
    else sink.device(false);
    return () => {
      if (!this.watches.has(watch.id)) return;
      this.forget(watch);
      if (watch.online) this.send(watch, 'stop');
    };
  }

  /** A `logs` message from a device (already known to come from `deviceId`'s topic). */
  receive(deviceId: string, payload: Buffer): void {
    const decoded = decodePayload('logs', payload);
    if (!decoded.ok) {
      this.options.metrics?.invalidPayloads.inc({ channel: 'logs', reason: decoded.reason });
      this.options.logger.warn(
        { deviceId, reason: decoded.reason, detail: decoded.detail },
        'log batch refused',
      );
      return;
    }
    const batch = decoded.value;
    const watch = this.watches.get(batch.watch);
    // Another replica's watch, one closed meanwhile, or a device answering for another's.
    if (!watch || watch.deviceId !== deviceId) return;
    this.answered(watch);
    for (const line of batch.lines) {
      if (watch.lastSeq !== null && line.seq <= watch.lastSeq) continue;
      watch.lastSeq = line.seq;
      watch.sink.line(line);
    }
    if (batch.through !== undefined && (watch.lastSeq === null || batch.through > watch.lastSeq))
      watch.lastSeq = batch.through;
    if (batch.error !== undefined) {
      this.forget(watch);
      watch.sink.error(batch.errorCode ?? 'conflict', batch.error);
      return;
    }
    if (batch.caughtUp) watch.sink.caughtUp(watch.lastSeq ?? -1);
    if (batch.end) {
      this.forget(watch);
      watch.sink.end();
    }
  }

  /** The device went offline or came back (every replica hears it). */
  presenceChanged(deviceId: string, online: boolean): void {
    for (const watch of [...this.watches.values()]) {
      if (watch.deviceId !== deviceId || watch.online === online) continue;
      watch.online = online;
      watch.sink.device(online);
      if (online) this.begin(watch);
      else if (!watch.request.follow) {
        this.forget(watch);
        watch.sink.error('device-offline', `device ${deviceId} went offline before its logs were sent`);
      } else this.answered(watch);
    }
  }

  /** The watches open, by device (for tests and metrics). */
  count(deviceId?: string): number {
    return [...this.watches.values()].filter((watch) => !deviceId || watch.deviceId === deviceId).length;
  }

  /** Ends every watch (the server is stopping); the agents' leases run out by themselves. */
  stop(): void {
    for (const watch of [...this.watches.values()]) {
      this.forget(watch);
      watch.sink.error('unavailable', 'the server is stopping: reconnect to resume');
    }
  }

  /** Sends `start` and expects an answer in time. */
  private begin(watch: Watch): void {
    this.send(watch, 'start');
    if (watch.answerTimer) clearTimeout(watch.answerTimer);
    watch.answerTimer = setTimeout(() => {
      if (!this.watches.has(watch.id)) return;
      this.forget(watch);
      this.send(watch, 'stop');
      watch.sink.error(
        'device-no-answer',
        `device ${watch.deviceId} did not answer the log request in ${Math.round(this.answerMs / 1000)} s ` +
          '(is its agent older than live logs?)',
      );
    }, this.answerMs);
    watch.answerTimer.unref();
  }

  private answered(watch: Watch): void {
    if (watch.answerTimer) clearTimeout(watch.answerTimer);
    watch.answerTimer = null;
  }

  private forget(watch: Watch): void {
    clearInterval(watch.renewTimer);
    this.answered(watch);
    this.watches.delete(watch.id);
  }

  /** A start resumes after the last line relayed, once there is one; before that it asks for the backlog. */
  private send(watch: Watch, action: 'start' | 'stop'): void {
    const now = this.options.now();
    const { sources, baud, afterSeq, sinceAt, tail, follow } = watch.request;
    const from =
      watch.lastSeq !== null
        ? { afterSeq: watch.lastSeq }
        : afterSeq !== undefined
          ? { afterSeq }
          : sinceAt !== undefined
            ? { sinceAt }
            : tail !== undefined
              ? { tail }
              : {};
    const message: LogWatch = {
      watch: watch.id,
      action,
      ...(sources && { sources }),
      ...(baud !== undefined && { baud }),
      ...from,
      follow,
      leaseUntil: now + this.leaseMs,
      issuedAt: now,
    };
    this.options
      .publish(watch.deviceId, message)
      .catch((error: unknown) =>
        this.options.logger.warn(
          { err: error, deviceId: watch.deviceId, watch: watch.id },
          `log ${action} not sent`,
        ),
      );
  }
}

/** The server's relay, publishing through its MQTT session (`mqtt` is asked only when a watch opens). */
export function createLogRelay(options: {
  mqtt: () => Pick<ServerMqttClient, 'publishToDevice'>;
  clock: Clock;
  metrics: ServerMetrics;
  logger: Logger;
}): LogRelay {
  return new LogRelay({
    publish: (deviceId, message) =>
      options.mqtt().publishToDevice(deviceId, 'log-watch', message, { retain: false }),
    now: () => options.clock.now(),
    metrics: options.metrics,
    logger: options.logger,
  });
}
