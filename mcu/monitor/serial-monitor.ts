import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SerialPort } from 'serialport';
import { BoardfleetError } from '../../protocol/errors.ts';
import { describeOpenError } from '../flasher/serial-link.ts';
import {
  formatSeconds,
  LINE_ENDINGS,
  type MonitorSettings,
  reconnectDelayMs,
  timestamper,
} from './monitor-settings.ts';

/** How often the port's device node is looked for: Linux tells a reader nothing when a USB board is unplugged. */
const PRESENCE_CHECK_MS = 500;

/**
 * Opening the port resets an Uno-class board into its bootloader, which listens for about a second
 * and would take a line sent then for a command. Lines wait until the board first speaks (a sketch
 * is running) or this long after the open, whichever comes first.
 */
const BOOTLOADER_WINDOW_MS = 2_000;

export interface SerialMonitorOptions extends MonitorSettings {
  path: string;
  /** What the board sent, as it arrives (with timestamps when asked). */
  output: (bytes: Uint8Array) => void;
  /** The monitor's own lines: connected, disconnected, reconnected, closed. */
  status: (line: string) => void;
  now?: () => Date;
}

export interface SerialMonitor {
  /** Sends a line with the chosen line ending; false when the port is down and the line was dropped. */
  send(line: string): Promise<boolean>;
  /** Closes the port for good, saying why; `done` then resolves. */
  close(reason: string): Promise<void>;
  /** Resolves once closed; rejects (`port-lost`) when the port went away and did not come back in time. */
  readonly done: Promise<void>;
}

/**
 * A serial monitor on one port, like the Arduino IDE's: prints what the board sends, sends lines,
 * and when the port goes away (a board reset that re-enumerates USB, an unplug, a bench board
 * restarted) waits for its path to come back and opens it again. Opening resets an Uno-class
 * board (DTR), as every serial monitor does. A port that cannot be opened at first is an error.
 */
export async function openSerialMonitor(options: SerialMonitorOptions): Promise<SerialMonitor> {
  const { path } = options;
  const stamp = options.timestamps
    ? timestamper(options.now ?? (() => new Date()))
    : (bytes: Uint8Array) => bytes;
  let port: SerialPort | undefined;
  let presence: NodeJS.Timeout | undefined;
  /** Lines waiting for the board to leave its bootloader after an open; undefined once it has. */
  let held: string[] | undefined;
  let holding: NodeJS.Timeout | undefined;
  let closed = false;
  const stopWaiting = new AbortController();
  let finished!: { resolve: () => void; reject: (error: Error) => void };
  const done = new Promise<void>((resolve, reject) => (finished = { resolve, reject }));

  const connect = async () => {
    const opened = await openPort(path, options.baudRate);
    if (closed) {
      opened.close(() => {});
      return;
    }
    port = opened;
    // Lines still held when the port went away go out once it is back and its board has started.
    held ??= [];
    holding = setTimeout(release, BOOTLOADER_WINDOW_MS);
    opened.on('data', (chunk: Buffer) => {
      release();
      options.output(stamp(chunk));
    });
    opened.on('error', (error: Error) => lose(opened, error.message));
    opened.on('close', (error?: Error & { disconnected?: boolean }) => {
      if (error) lose(opened, error.disconnected ? 'the line hung up' : error.message);
    });
    presence = setInterval(() => {
      if (!existsSync(path)) lose(opened, 'its device node is gone');
    }, PRESENCE_CHECK_MS);
  };

  const release = () => {
    clearTimeout(holding);
    const lines = held ?? [];
    held = undefined;
    for (const line of lines) void write(line);
  };

  const write = (line: string): Promise<boolean> => {
    const current = port;
    const bytes = Buffer.from(line + LINE_ENDINGS[options.lineEnding]);
    if (!current) return Promise.resolve(false);
    if (bytes.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      current.write(bytes, (error) => {
        if (error) resolve(false);
        else current.drain((drainError) => resolve(!drainError));
      });
    });
  };

  const lose = (lost: SerialPort, reason: string) => {
    if (closed || port !== lost) return;
    port = undefined;
    clearInterval(presence);
    clearTimeout(holding);
    if (lost.isOpen) lost.close(() => {});
    options.status(`-- ${path} disconnected (${reason}); waiting for it to come back --`);
    void waitForReturn();
  };

  const waitForReturn = async () => {
    const deadline = Date.now() + options.reconnectTimeoutMs;
    for (let attempt = 0; !closed; attempt++) {
      if (existsSync(path)) {
        try {
          await connect();
          if (!closed) options.status(`-- reconnected to ${path} --`);
          return;
        } catch {
          // Back but not ready (still being set up, or busy for a moment): keep looking.
        }
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        closed = true;
        finished.reject(
          new BoardfleetError(
            'port-lost',
            `${path} did not come back in ${formatSeconds(options.reconnectTimeoutMs)}`,
          ),
        );
        return;
      }
      try {
        await sleep(Math.min(reconnectDelayMs(attempt), left), undefined, { signal: stopWaiting.signal });
      } catch {
        return; // closed while waiting
      }
    }
  };

  await connect();
  options.status(`Connected to ${path} at ${options.baudRate} baud (Ctrl-C to quit)`);

  return {
    async send(line) {
      if (!port) return false;
      if (!held) return write(line);
      held.push(line);
      return true;
    },
    async close(reason) {
      if (closed) return;
      closed = true;
      stopWaiting.abort();
      clearInterval(presence);
      clearTimeout(holding);
      const current = port;
      port = undefined;
      if (current?.isOpen) await new Promise<void>((resolve) => current.close(() => resolve()));
      options.status(`-- closed ${path} (${reason}) --`);
      finished.resolve();
    },
    done,
  };
}

/** Opens with the same exclusive lock as the flasher, so nothing else talks to the board meanwhile. */
function openPort(path: string, baudRate: number): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate, autoOpen: false, lock: true });
  return new Promise((resolve, reject) => {
    port.open((error) => (error ? reject(describeOpenError(path, error)) : resolve(port)));
  });
}
