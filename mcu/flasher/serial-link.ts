import { existsSync } from 'node:fs';
import { SerialPort } from 'serialport';
import { BoardfleetError } from '../../protocol/errors.ts';

/**
 * The few things a bootloader protocol needs from a serial port. Implemented over `SerialPort`
 * here and by the in-process bootloader doubles in tests.
 */
export interface SerialLink {
  readonly path: string;
  readonly baudRate: number;
  write(data: Uint8Array): Promise<void>;
  /** Resolves with exactly `length` bytes; rejects with `LinkTimeoutError` or `LinkLostError`. */
  read(length: number, timeoutMs: number): Promise<Uint8Array>;
  /** Drops whatever has arrived and not been read (line noise, a sketch's last output). */
  flushInput(): Promise<void>;
  setSignals(signals: { dtr?: boolean; rts?: boolean }): Promise<void>;
  close(): Promise<void>;
}

export type OpenLink = (path: string, baudRate: number) => Promise<SerialLink>;

/** Nothing arrived in time: the caller knows what it was waiting for and says so. */
export class LinkTimeoutError extends Error {
  constructor(
    readonly expected: number,
    readonly received: number,
  ) {
    super(`timed out waiting for ${expected} bytes (got ${received})`);
    this.name = 'LinkTimeoutError';
  }
}

/** The port closed or failed under us: unplugged, or the board re-enumerated. */
export class LinkLostError extends Error {
  constructor(path: string, options?: { cause?: unknown }) {
    super(`${path} closed`, options);
    this.name = 'LinkLostError';
  }
}

/**
 * Buffers incoming bytes and hands them to exact-length reads. Shared by the real port and the
 * doubles so both time out and fail the same way.
 */
export class ByteQueue {
  private buffer = new Uint8Array(0);
  private waiter?: { length: number; resolve: (bytes: Uint8Array) => void; reject: (error: Error) => void };
  private lostError?: Error;

  push(bytes: Uint8Array): void {
    const merged = new Uint8Array(this.buffer.length + bytes.length);
    merged.set(this.buffer);
    merged.set(bytes, this.buffer.length);
    this.buffer = merged;
    this.serve();
  }

  /** From now on every read fails with `error`, the pending one included. */
  fail(error: Error): void {
    this.lostError ??= error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
  }

  clear(): void {
    this.buffer = new Uint8Array(0);
  }

  read(length: number, timeoutMs: number): Promise<Uint8Array> {
    if (this.lostError) return Promise.reject(this.lostError);
    if (this.waiter) return Promise.reject(new Error('only one read at a time'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new LinkTimeoutError(length, this.buffer.length));
      }, timeoutMs);
      this.waiter = {
        length,
        resolve: (bytes) => {
          clearTimeout(timer);
          resolve(bytes);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.serve();
    });
  }

  private serve(): void {
    if (!this.waiter || this.buffer.length < this.waiter.length) return;
    const { length, resolve } = this.waiter;
    this.waiter = undefined;
    const bytes = this.buffer.slice(0, length);
    this.buffer = this.buffer.slice(length);
    resolve(bytes);
  }
}

/** A serial port opened for flashing. */
export class SerialPortLink implements SerialLink {
  private readonly queue = new ByteQueue();
  private lost = false;

  private constructor(
    private readonly port: SerialPort,
    readonly path: string,
    readonly baudRate: number,
  ) {
    port.on('data', (chunk: Buffer) => this.queue.push(chunk));
    const onLost = (error?: Error) => {
      this.lost = true;
      this.queue.fail(new LinkLostError(path, { cause: error }));
    };
    port.on('close', onLost);
    port.on('error', onLost);
  }

  /**
   * Opens with an exclusive lock, so a second program (or a second flash) fails at once with
   * `port-busy` instead of both talking to the bootloader.
   */
  static async open(path: string, baudRate: number): Promise<SerialPortLink> {
    const port = new SerialPort({ path, baudRate, autoOpen: false, lock: true });
    await new Promise<void>((resolve, reject) => {
      port.open((error) => (error ? reject(describeOpenError(path, error)) : resolve()));
    });
    return new SerialPortLink(port, path, baudRate);
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.lost) throw new LinkLostError(this.path);
    await new Promise<void>((resolve, reject) => {
      this.port.write(Buffer.from(data), (error) =>
        error ? reject(new LinkLostError(this.path, { cause: error })) : resolve(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      this.port.drain((error) =>
        error ? reject(new LinkLostError(this.path, { cause: error })) : resolve(),
      );
    });
  }

  async read(length: number, timeoutMs: number): Promise<Uint8Array> {
    try {
      return await this.queue.read(length, timeoutMs);
    } catch (error) {
      // Linux reports an unplugged USB serial port to writes only; a read just waits. A device
      // node that has gone is the tell.
      if (error instanceof LinkTimeoutError && !existsSync(this.path))
        throw new LinkLostError(this.path, { cause: error });
      throw error;
    }
  }

  async flushInput(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.port.flush((error) =>
        error ? reject(new LinkLostError(this.path, { cause: error })) : resolve(),
      );
    });
    this.queue.clear();
  }

  async setSignals(signals: { dtr?: boolean; rts?: boolean }): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.port.set(signals, (error) => (error ? reject(error) : resolve()));
    });
  }

  async close(): Promise<void> {
    if (this.lost || !this.port.isOpen) return;
    await new Promise<void>((resolve) => this.port.close(() => resolve()));
  }
}

/** Names the usual reasons an open fails (held by another program, unplugged, no permission). */
export function describeOpenError(path: string, error: Error): BoardfleetError {
  const message = error.message;
  if (/Cannot lock port|EBUSY|Resource temporarily unavailable/i.test(message)) {
    return new BoardfleetError(
      'port-busy',
      `${path} is in use by another program (a serial monitor, the Arduino IDE, a running boardfleet agent or flash); close it and try again`,
      { cause: error },
    );
  }
  if (/ENOENT|No such file/i.test(message)) {
    return new BoardfleetError(
      'port-not-found',
      `${path} does not exist: is the board plugged in? "boardfleet ports" lists what is connected`,
      { cause: error },
    );
  }
  if (/EACCES|Permission denied/i.test(message)) {
    return new BoardfleetError(
      'port-permission-denied',
      `No permission to open ${path}: add yourself to the "dialout" group (then log in again)`,
      { cause: error },
    );
  }
  return new BoardfleetError('port-open-failed', `Cannot open ${path}: ${message}`, { cause: error });
}

export const openSerialPortLink: OpenLink = (path, baudRate) => SerialPortLink.open(path, baudRate);
