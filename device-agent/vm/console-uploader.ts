import { open } from 'node:fs/promises';
import pino, { type Logger } from 'pino';
import { CONSOLE_MAX_BYTES, consolePath } from '../../protocol/device-console.ts';

export interface ConsoleUploaderOptions {
  /** The server's base URL, e.g. http://gateway:8080. */
  server: string;
  deviceId: string;
  secret: string;
  fetch?: typeof fetch;
  /** A changed console is uploaded at most this often (default 10 s). */
  intervalMs?: number;
  /** One upload may take this long before it counts as failed (default 15 s). */
  requestTimeoutMs?: number;
  logger?: Logger;
}

interface WatchedConsole {
  artifact: string;
  version: string;
  file: string;
  /** Size and mtime of the file at the last successful upload: unchanged means nothing to send. */
  uploaded: string | null;
  /** Uploads of one console run one after the other. */
  running: Promise<void>;
  /** Uploads queued or running: a tick adds none while one is (a slow server must not pile them up). */
  pending: number;
  /** Unwatched: dropped once its last content is uploaded. */
  retiring: boolean;
  failing: boolean;
}

/**
 * Sends the tail of each VM's console file to the server, so an operator can read what a VM
 * printed (and why it crashed) without reaching the device. A console is uploaded when its file
 * changed, at most every `intervalMs`, and at once on {@link flush}. Each upload replaces the
 * server's copy with the file's last {@link CONSOLE_MAX_BYTES}. A failed upload is logged and
 * tried again on the next tick; nothing here throws at the caller.
 */
export class ConsoleUploader {
  private readonly consoles = new Map<string, WatchedConsole>();
  private readonly fetch: typeof fetch;
  private readonly logger: Logger;
  private readonly requestTimeoutMs: number;
  private readonly authorization: string;
  private timer: NodeJS.Timeout | null;

  constructor(private readonly options: ConsoleUploaderOptions) {
    this.fetch = options.fetch ?? fetch;
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.authorization = `Basic ${Buffer.from(`${options.deviceId}:${options.secret}`).toString('base64')}`;
    this.timer = setInterval(() => this.tick(), options.intervalMs ?? 10_000);
    this.timer.unref();
  }

  /** Starts following a VM's console file; it need not exist yet. Watching it again changes the file. */
  watch(artifact: string, version: string, file: string): void {
    const existing = this.consoles.get(key(artifact, version));
    if (existing) {
      existing.retiring = false;
      if (existing.file !== file) {
        existing.file = file;
        existing.uploaded = null;
      }
      return;
    }
    this.consoles.set(key(artifact, version), {
      artifact,
      version,
      file,
      uploaded: null,
      running: Promise.resolve(),
      pending: 0,
      retiring: false,
      failing: false,
    });
  }

  /** Uploads the console now if it changed since the last upload (call it when a VM exits or fails). */
  async flush(artifact: string, version: string): Promise<void> {
    const watched = this.consoles.get(key(artifact, version));
    if (watched) await this.upload(watched);
  }

  /** Uploads what is left of the console, then stops following it (retrying until that upload works). */
  async unwatch(artifact: string, version: string): Promise<void> {
    const watched = this.consoles.get(key(artifact, version));
    if (!watched) return;
    watched.retiring = true;
    await this.upload(watched);
  }

  /** Stops the timer after one last try of every console that changed. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await Promise.all([...this.consoles.values()].map((watched) => this.upload(watched)));
  }

  private tick(): void {
    for (const watched of this.consoles.values()) {
      if (watched.pending === 0) void this.upload(watched);
    }
  }

  private upload(watched: WatchedConsole): Promise<void> {
    watched.pending++;
    watched.running = watched.running
      .then(() => this.uploadIfChanged(watched))
      .finally(() => watched.pending--);
    return watched.running;
  }

  private async uploadIfChanged(watched: WatchedConsole): Promise<void> {
    const label = `${watched.artifact} ${watched.version}`;
    try {
      const tail = await readTail(watched.file, CONSOLE_MAX_BYTES);
      if (!tail || tail.signature === watched.uploaded) {
        if (watched.retiring) this.forget(watched);
        return;
      }
      const response = await this.fetch(
        `${this.options.server.replace(/\/+$/, '')}${consolePath(this.options.deviceId, watched.artifact, watched.version)}`,
        {
          method: 'PUT',
          headers: { authorization: this.authorization, 'content-type': 'text/plain; charset=utf-8' },
          body: tail.bytes,
          signal: AbortSignal.timeout(this.requestTimeoutMs),
        },
      );
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`);
      }
      watched.uploaded = tail.signature;
      if (watched.failing) this.logger.info(`console of ${label} uploaded again`);
      watched.failing = false;
      if (watched.retiring) this.forget(watched);
    } catch (error) {
      // Log the first failure of a streak; the next tick tries again.
      const message = `uploading the console of ${label} failed (will retry): ${(error as Error).message}`;
      if (watched.failing) this.logger.debug(message);
      else this.logger.warn(message);
      watched.failing = true;
    }
  }

  private forget(watched: WatchedConsole): void {
    const current = this.consoles.get(key(watched.artifact, watched.version));
    if (current === watched) this.consoles.delete(key(watched.artifact, watched.version));
  }
}

const key = (artifact: string, version: string) => `${artifact}\u0000${version}`;

/** The file's last `maxBytes` and a signature of its state; null when it does not exist (yet). */
async function readTail(
  file: string,
  maxBytes: number,
): Promise<{ bytes: Buffer; signature: string } | null> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    const stat = await handle.stat();
    const length = Math.min(stat.size, maxBytes);
    const bytes = Buffer.alloc(length);
    const { bytesRead } = await handle.read(bytes, 0, length, stat.size - length);
    return { bytes: bytes.subarray(0, bytesRead), signature: `${stat.size}:${stat.mtimeMs}:${stat.ino}` };
  } finally {
    await handle.close();
  }
}
