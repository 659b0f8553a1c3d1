import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { SHELL_CHUNK_BYTES, type ShellInput, type ShellOutput } from '../../protocol/device-shell.ts';
import { endShellProcess, type ShellProcess } from './shell-process.ts';

/** Output is held this long so a burst of small writes leaves as one message. */
const COALESCE_MS = 5;
/** Output published but not yet acknowledged: above it the shell's output is paused, below the low mark resumed. */
const PAUSE_ABOVE_BYTES = 256 * 1024;
const RESUME_BELOW_BYTES = 64 * 1024;

export interface ShellSessionOptions {
  id: string;
  process: ShellProcess;
  idleSeconds: number;
  publish: (message: ShellOutput) => Promise<boolean>;
  now: () => number;
  logger: Logger;
  /** Called once, when the shell has exited and its `exit` is queued. */
  onEnd: (id: string) => void;
}

/**
 * One running shell: its bytes out as `shell-output` messages in order (one publish chain,
 * coalesced, at most 32 KiB each), operator input to its stdin, its end as `exit`.
 */
export class ShellSession {
  private outputSeq = 0;
  private lastInputSeq: number;
  private held: Buffer[] = [];
  private heldBytes = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private unacknowledgedBytes = 0;
  private paused = false;
  private chain: Promise<unknown> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | null = null;
  /** Why the session was ended from this side (operator, idle); null while it runs or when the shell exited by itself. */
  private endReason: string | null = null;
  /** No `exit` is sent (the device is going offline or stopping: nobody would get it). */
  private silent = false;
  private finished = false;

  constructor(
    private readonly options: ShellSessionOptions,
    openSeq: number,
  ) {
    this.lastInputSeq = openSeq;
    const { child, mode } = options.process;
    this.send({ type: 'opened', mode });
    for (const stream of [child.stdout, child.stderr])
      stream?.on('data', (chunk: Buffer) => this.hold(chunk));
    child.stdin?.on('error', () => undefined);
    child.on('error', (error) => {
      options.logger.warn({ err: error, session: options.id }, 'the shell could not start');
      this.finish(null, `the shell could not start: ${error.message}`);
    });
    child.on('close', (code, signal) => this.finish(code, signal ? `ended by ${signal}` : null));
    this.touch();
  }

  get id(): string {
    return this.options.id;
  }

  /** The shell's process group (detached: its pid); undefined when it did not start. */
  get processGroup(): number | undefined {
    return this.options.process.child.pid;
  }

  /** An operator's message; a repeated or older `seq` (a QoS 1 redelivery) is dropped. */
  input(message: ShellInput): void {
    if (message.seq <= this.lastInputSeq) return;
    this.lastInputSeq = message.seq;
    const { child, resize } = this.options.process;
    if (message.type === 'data' && message.data) {
      this.touch();
      if (child.stdin?.writable) child.stdin.write(Buffer.from(message.data, 'base64'));
    } else if (message.type === 'resize' && message.cols && message.rows) {
      resize(message.cols, message.rows);
    } else if (message.type === 'close') {
      this.end('closed by the operator');
    }
  }

  /** Ends the shell; `exit` follows with this reason once it has gone, unless `silent`. */
  end(reason: string, options: { silent?: boolean } = {}): void {
    this.endReason ??= reason;
    if (options.silent) this.silent = true;
    endShellProcess(this.options.process.child);
  }

  private touch(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const seconds = this.options.idleSeconds;
    this.idleTimer = setTimeout(() => this.end(`idle: no input or output for ${seconds} s`), seconds * 1000);
    this.idleTimer.unref();
  }

  private hold(chunk: Buffer): void {
    this.touch();
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= SHELL_CHUNK_BYTES) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.heldBytes === 0) return;
    const bytes = Buffer.concat(this.held);
    this.held = [];
    this.heldBytes = 0;
    for (let offset = 0; offset < bytes.length; offset += SHELL_CHUNK_BYTES) {
      const part = bytes.subarray(offset, offset + SHELL_CHUNK_BYTES);
      this.unacknowledgedBytes += part.length;
      this.send({ type: 'data', data: part.toString('base64') }, part.length);
    }
    this.applyBackpressure();
  }

  /** Queues a message on the one publish chain, so the server gets them in the order they were made. */
  private send(message: Pick<ShellOutput, 'type' | 'data' | 'mode' | 'code' | 'reason'>, size = 0): void {
    const full: ShellOutput = {
      session: this.options.id,
      seq: this.outputSeq++,
      ...message,
      at: this.options.now(),
    };
    this.chain = this.chain
      .then(() => this.options.publish(full))
      .catch((error: unknown) => this.options.logger.debug({ err: error }, 'shell output not sent'))
      .finally(() => {
        this.unacknowledgedBytes -= size;
        this.applyBackpressure();
      });
  }

  private applyBackpressure(): void {
    const { stdout, stderr } = this.options.process.child;
    const streams = [stdout, stderr].filter((stream): stream is Readable => stream !== null);
    if (!this.paused && this.unacknowledgedBytes > PAUSE_ABOVE_BYTES) {
      this.paused = true;
      for (const stream of streams) stream.pause();
    } else if (this.paused && this.unacknowledgedBytes < RESUME_BELOW_BYTES) {
      this.paused = false;
      for (const stream of streams) stream.resume();
    }
  }

  private finish(code: number | null, signalReason: string | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.flush();
    if (!this.silent) {
      const reason = this.endReason ?? signalReason ?? `the shell exited with code ${code}`;
      // A shell ended from here has no exit code of its own worth passing on.
      this.send({ type: 'exit', code: this.endReason ? null : code, reason });
    }
    this.options.onEnd(this.options.id);
  }
}
