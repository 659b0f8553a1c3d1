import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { WebSocket } from 'ws';
import type { AuditChannel } from '../../protocol/api/audit.ts';
import { decodePayload } from '../../protocol/codec.ts';
import {
  SHELL_CHUNK_BYTES,
  type ShellInput,
  type ShellMode,
  type ShellOutput,
  type ShellServerControl,
  shellClientControlSchema,
} from '../../protocol/device-shell.ts';
import type { AuditRepository } from '../audit/audit.repository.ts';
import type { Clock } from '../common/clock.ts';
import type { ShellSessionRepository } from './shell-session.repository.ts';

/** Output kept as a session's transcript (with BOARDFLEET_SHELL_TRANSCRIPTS=on); the rest is counted, not kept. */
export const TRANSCRIPT_MAX_BYTES = 1024 * 1024;
/** How long a device has to answer an `open` before the operator is told it did not. */
const ANSWER_TIMEOUT_MS = 15_000;
/** Output waiting for a slow client: past this the session is ended rather than held in memory. */
const MAX_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024;

export interface ShellTunnelOptions {
  sessions: ShellSessionRepository;
  audit: AuditRepository;
  /** `shell-input` to the device (QoS 1). */
  publish: (deviceId: string, input: ShellInput) => Promise<void>;
  clock: Clock;
  idleSeconds: number;
  transcripts: boolean;
  logger: Logger;
  answerTimeoutMs?: number;
  /** Counts output refused by the codec, as for every device channel. */
  metrics?: Pick<ServerMetrics, 'invalidPayloads'>;
}

export interface ShellRequest {
  deviceId: string;
  operator: { name: string; tokenId: string };
  via: AuditChannel;
  cols: number;
  rows: number;
  command: string | null;
}

/**
 * The server's end of remote shells: relays an operator's WebSocket to the device's `shell-input`
 * and its `shell-output` back, records each session (row and audit entries), and ends it on
 * either side's close, the device's exit, an idle timeout or the device going offline. Every
 * replica receives every `shell-output`; a replica relays only the sessions it holds.
 */
export class ShellTunnel {
  private readonly live = new Map<string, TunnelSession>();

  constructor(private readonly options: ShellTunnelOptions) {}

  /** Sessions this replica holds for the device. */
  openOn(deviceId: string): number {
    let count = 0;
    for (const session of this.live.values()) if (session.request.deviceId === deviceId) count++;
    return count;
  }

  /** Starts a session on an upgraded connection: recorded, audited, then opened on the device. */
  async open(socket: WebSocket, request: ShellRequest): Promise<void> {
    const id = `sh-${randomBytes(8).toString('hex')}`;
    const session = new TunnelSession(id, socket, request, this.options, () => this.live.delete(id));
    this.live.set(id, session);
    await session.start();
  }

  /** A `shell-output` message from a device; anything malformed, foreign or repeated is dropped. */
  receive(deviceId: string, payload: Buffer): void {
    const decoded = decodePayload('shell-output', payload);
    if (!decoded.ok) {
      this.options.metrics?.invalidPayloads.inc({ channel: 'shell-output', reason: decoded.reason });
      this.options.logger.warn(
        { deviceId, reason: decoded.reason, detail: decoded.detail },
        'shell output dropped',
      );
      return;
    }
    const session = this.live.get(decoded.value.session);
    // A device answers only for its own sessions: one device cannot write into another's terminal.
    if (session?.request.deviceId === deviceId) session.fromDevice(decoded.value);
  }

  /** Presence: a device that went offline cannot answer; its sessions end on both sides. */
  presenceChanged(deviceId: string, online: boolean): void {
    if (online) return;
    for (const session of [...this.live.values()])
      if (session.request.deviceId === deviceId) void session.end('device went offline', null, false);
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.live.values()].map((session) => session.end('the server is stopping', null, true)),
    );
  }
}

class TunnelSession {
  private inputSeq = 0;
  private lastOutputSeq = -1;
  private mode: ShellMode | null = null;
  private bytesIn = 0;
  private bytesOut = 0;
  private transcript: Buffer[] = [];
  private transcriptBytes = 0;
  private readonly startedAt: number;
  private ended = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private answerTimer: NodeJS.Timeout | null = null;
  private publishing: Promise<unknown> = Promise.resolve();
  private recorded: Promise<unknown> = Promise.resolve();

  constructor(
    readonly id: string,
    private readonly socket: WebSocket,
    readonly request: ShellRequest,
    private readonly options: ShellTunnelOptions,
    private readonly forget: () => void,
  ) {
    this.startedAt = options.clock.now();
    socket.on('message', (data, isBinary) => this.fromClient(data as Buffer, isBinary));
    socket.on('close', () => void this.end('the operator disconnected', null, true));
    socket.on('error', (error) => options.logger.debug({ err: error, session: id }, 'shell socket error'));
  }

  async start(): Promise<void> {
    const { request, options } = this;
    this.recorded = options.sessions
      .insert({
        id: this.id,
        deviceId: request.deviceId,
        actor: request.operator.name,
        actorTokenId: request.operator.tokenId,
        via: request.via,
        command: request.command,
        startedAt: this.startedAt,
      })
      .then(() =>
        this.audit(
          'shell.open',
          request.command
            ? `session ${this.id}, command ${request.command}`
            : `session ${this.id}, interactive`,
        ),
      );
    await this.recorded;
    if (this.ended) return;
    this.toDevice({
      type: 'open',
      cols: request.cols,
      rows: request.rows,
      idleSeconds: options.idleSeconds,
      ...(request.command !== null && { command: request.command }),
    });
    this.answerTimer = setTimeout(
      () => void this.end('the device did not answer (is its agent too old for the shell?)', null, true),
      options.answerTimeoutMs ?? ANSWER_TIMEOUT_MS,
    );
    this.touch();
  }

  fromDevice(message: ShellOutput): void {
    // A QoS 1 redelivery repeats a seq already seen.
    if (this.ended || message.seq <= this.lastOutputSeq) return;
    this.lastOutputSeq = message.seq;
    if (this.answerTimer) clearTimeout(this.answerTimer);
    this.touch();
    if (message.type === 'opened') {
      this.mode = message.mode ?? 'pipes';
      this.control({ type: 'opened', session: this.id, mode: this.mode });
    } else if (message.type === 'data' && message.data) {
      const bytes = Buffer.from(message.data, 'base64');
      this.bytesOut += bytes.length;
      this.keep(bytes);
      if (this.socket.bufferedAmount > MAX_CLIENT_BACKLOG_BYTES)
        void this.end('the operator’s connection is too slow for the output', null, true);
      else this.socket.send(bytes, { binary: true });
    } else if (message.type === 'exit') {
      void this.end(message.reason ?? 'the shell exited', message.code ?? null, false);
    } else if (message.type === 'refused') {
      void this.end(`the device refused: ${message.reason ?? 'no reason given'}`, null, false);
    }
  }

  /**
   * Ends the session once: the device is told (`close`) unless it ended it, the client gets
   * `exit` with the reason, the row and the audit log get the duration and the bytes.
   */
  async end(reason: string, code: number | null, tellDevice: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.forget();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.answerTimer) clearTimeout(this.answerTimer);
    if (tellDevice) this.toDevice({ type: 'close' });
    this.control({ type: 'exit', code, reason });
    // A close reason is at most 123 bytes: the full one went in the `exit` message.
    this.socket.close(1000, Buffer.from(reason).subarray(0, 120).toString());
    const endedAt = this.options.clock.now();
    const seconds = ((endedAt - this.startedAt) / 1000).toFixed(1);
    try {
      await this.recorded;
      await this.options.sessions.finish(this.id, {
        endedAt,
        endReason: reason,
        exitCode: code,
        mode: this.mode,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        transcript: this.options.transcripts ? transcriptText(Buffer.concat(this.transcript)) : null,
      });
      const exit = code === null ? '' : `, exit ${code}`;
      await this.audit(
        'shell.end',
        `session ${this.id}, ${seconds} s, ${this.bytesIn} bytes in, ${this.bytesOut} bytes out${exit}: ${reason}`,
      );
    } catch (error) {
      this.options.logger.error({ err: error, session: this.id }, 'shell session end not recorded');
    }
    await this.publishing;
  }

  private fromClient(data: Buffer, isBinary: boolean): void {
    if (this.ended) return;
    if (isBinary) {
      this.touch();
      this.bytesIn += data.length;
      for (let offset = 0; offset < data.length; offset += SHELL_CHUNK_BYTES)
        this.toDevice({
          type: 'data',
          data: data.subarray(offset, offset + SHELL_CHUNK_BYTES).toString('base64'),
        });
      return;
    }
    let control: unknown;
    try {
      control = JSON.parse(data.toString());
    } catch {
      control = null;
    }
    const parsed = shellClientControlSchema.safeParse(control);
    if (parsed.success) this.toDevice({ type: 'resize', cols: parsed.data.cols, rows: parsed.data.rows });
    else this.options.logger.debug({ session: this.id }, 'unknown shell control message dropped');
  }

  /** Queued on one chain per session: the device gets the operator's messages in order. */
  private toDevice(
    message: Pick<ShellInput, 'type' | 'data' | 'cols' | 'rows' | 'idleSeconds' | 'command'>,
  ): void {
    const input: ShellInput = {
      session: this.id,
      seq: this.inputSeq++,
      ...message,
      at: this.options.clock.now(),
    };
    this.publishing = this.publishing
      .then(() => this.options.publish(this.request.deviceId, input))
      .catch((error: unknown) => {
        this.options.logger.warn({ err: error, session: this.id }, 'shell input not sent');
        void this.end('the server could not reach the device', null, false);
      });
  }

  private control(message: ShellServerControl): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const seconds = this.options.idleSeconds;
    this.idleTimer = setTimeout(
      () => void this.end(`idle: no input or output for ${seconds} s`, null, true),
      seconds * 1000,
    );
    this.idleTimer.unref();
  }

  private keep(bytes: Buffer): void {
    if (!this.options.transcripts || this.transcriptBytes >= TRANSCRIPT_MAX_BYTES) return;
    const part = bytes.subarray(0, TRANSCRIPT_MAX_BYTES - this.transcriptBytes);
    this.transcript.push(part);
    this.transcriptBytes += part.length;
  }

  private async audit(action: string, detail: string): Promise<void> {
    await this.options.audit.append({
      at: this.options.clock.now(),
      actor: this.request.operator.name,
      actorTokenId: this.request.operator.tokenId,
      via: this.request.via,
      action,
      target: this.request.deviceId,
      outcome: 'ok',
      detail: detail.length > 500 ? `${detail.slice(0, 499)}…` : detail,
      reason: null,
    });
  }
}

/** Terminal output as storable text: UTF-8 (invalid bytes become U+FFFD), without NUL (PostgreSQL text refuses it). */
function transcriptText(bytes: Buffer): string {
  const text = bytes.toString('utf8').replaceAll('\u0000', '');
  return bytes.length >= TRANSCRIPT_MAX_BYTES
    ? `${text}\n[transcript cut at ${TRANSCRIPT_MAX_BYTES / 1024} KiB]\n`
    : text;
}
