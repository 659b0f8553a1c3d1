import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogBatch, LogLine, LogWatch } from '../../protocol/device-logs.ts';
import { BoardCapture, type OpenSerialLines } from './board-capture.ts';
import { LogRing } from './log-ring.ts';
import { LogStreamer } from './log-streamer.ts';

/** A serial port double: records opens and closes, and lets the test push lines or unplug it. */
class SerialDouble {
  readonly opens: Array<{ path: string; baud: number }> = [];
  closes = 0;
  failOpen: Error | null = null;
  private handlers: Parameters<OpenSerialLines>[2] | null = null;

  readonly open: OpenSerialLines = async (path, baud, handlers) => {
    if (this.failOpen) throw this.failOpen;
    this.opens.push({ path, baud });
    this.handlers = handlers;
    return {
      close: async () => {
        this.closes++;
        this.handlers = null;
      },
    };
  };

  get isOpen(): boolean {
    return this.handlers !== null;
  }

  print(text: string): void {
    this.handlers?.line(text);
  }

  unplug(reason: string): void {
    const handlers = this.handlers;
    this.handlers = null;
    handlers?.lost(reason);
  }
}

let dir: string;
let ring: LogRing;
let serial: SerialDouble;
let capture: BoardCapture;
const lines: LogLine[] = [];

async function until(what: () => boolean): Promise<void> {
  for (let polls = 0; !what(); polls++) {
    if (polls > 500) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const texts = () => lines.map((line) => `${line.stream === 'stderr' ? '! ' : ''}${line.text}`);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'board-capture-'));
  ring = new LogRing({ dir });
  lines.length = 0;
  ring.on('line', (line) => lines.push(line));
  serial = new SerialDouble();
  capture = new BoardCapture({
    port: '/dev/ttyACM0',
    resolvePort: async () => '/dev/ttyACM0',
    open: serial.open,
    append: (source, stream, text) => ring.append(source, stream, text),
  });
});

afterEach(() => {
  ring.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('BoardCapture', () => {
  it('opens the port with the first watch, appends its lines as board:<port>, and closes with the last', async () => {
    expect(capture.acquire('w1', 115_200)).toBeNull();
    expect(capture.acquire('w2', 115_200)).toBeNull();
    await until(() => serial.isOpen);
    serial.print('count 1');
    capture.release('w1');
    serial.print('count 2');
    capture.release('w2');
    await until(() => !serial.isOpen);
    expect(serial.opens).toEqual([{ path: '/dev/ttyACM0', baud: 115_200 }]);
    expect(texts()).toEqual(['! -- serial capture of /dev/ttyACM0 at 115200 baud --', 'count 1', 'count 2']);
    expect(new Set(lines.map((line) => line.source))).toEqual(new Set(['board:/dev/ttyACM0']));
  });

  it('refuses a second watch at another speed while the first captures', () => {
    expect(capture.acquire('w1', 57_600)).toBeNull();
    expect(capture.acquire('w2', 115_200)).toMatch(/captured at 57600 baud by another watch, not 115200/);
  });

  it('closes the port for a flash, says so, and captures again afterwards', async () => {
    capture.acquire('w1', 115_200);
    await until(() => serial.isOpen);
    let portWasOpenDuringFlash = true;
    const result = await capture.exclusive('flashing', async () => {
      portWasOpenDuringFlash = serial.isOpen;
      return 'flashed';
    });
    expect(result).toBe('flashed');
    expect(portWasOpenDuringFlash).toBe(false);
    await until(() => serial.isOpen);
    serial.print('after flash');
    expect(texts().slice(1)).toEqual([
      '! -- serial capture paused for flashing --',
      '! -- serial capture resumed --',
      'after flash',
    ]);
  });

  it('runs a flash without a word when nobody watches, and then leaves the port closed', async () => {
    await capture.exclusive('flashing', async () => {});
    await capture.exclusive('the Firmata probe', async () => {});
    expect(serial.opens).toEqual([]);
    expect(lines).toEqual([]);
  });

  it('ends the capture with the reason when the port goes away, and a new watch tries again', async () => {
    capture.acquire('w1', 115_200);
    await until(() => serial.isOpen);
    serial.unplug('/dev/ttyACM0 is gone (unplugged?)');
    expect(texts().at(-1)).toBe('! -- serial capture ended: /dev/ttyACM0 is gone (unplugged?) --');
    capture.acquire('w2', 115_200);
    await until(() => serial.opens.length === 2);
  });

  it('ends the capture with the reason when the port cannot be opened', async () => {
    serial.failOpen = new Error('/dev/ttyACM0 does not exist: is the board plugged in?');
    capture.acquire('w1', 115_200);
    await until(() => lines.length > 0);
    expect(texts()).toEqual([
      '! -- serial capture ended: /dev/ttyACM0 does not exist: is the board plugged in? --',
    ]);
  });
});

describe('LogStreamer with an attached board', () => {
  let streamer: LogStreamer;
  const published: LogBatch[] = [];
  const watch = (fields: Partial<LogWatch>): LogWatch => ({
    watch: 'w1',
    action: 'start',
    follow: true,
    leaseUntil: Date.now() + 30_000,
    issuedAt: Date.now(),
    ...fields,
  });

  beforeEach(() => {
    published.length = 0;
    streamer = new LogStreamer({
      ring,
      publish: async (batch) => {
        published.push(batch);
        return true;
      },
      workloads: () => ({ apps: ['demo'], vms: [] }),
      board: () => capture,
      coalesceMs: 1,
    });
  });
  afterEach(() => streamer.stopAll());

  it('captures while a watch names the board, streams its lines, and releases the port at stop', async () => {
    streamer.handle(watch({ sources: ['board:/dev/ttyACM0'], baud: 9600 }));
    await until(() => serial.isOpen);
    expect(serial.opens).toEqual([{ path: '/dev/ttyACM0', baud: 9600 }]);
    serial.print('hello');
    ring.append('app:demo', 'stdout', 'not asked for');
    await until(() => published.some((batch) => batch.lines.some((line) => line.text === 'hello')));
    expect(
      published.flatMap((batch) => batch.lines).every((line) => line.source === 'board:/dev/ttyACM0'),
    ).toBe(true);
    streamer.handle(watch({ action: 'stop' }));
    await until(() => !serial.isOpen);
  });

  it('refuses a board on another port, naming the attached one', async () => {
    streamer.handle(watch({ sources: ['board:/dev/ttyUSB3'] }));
    await until(() => published.length > 0);
    expect(published[0]).toMatchObject({
      end: true,
      errorCode: 'log-source-unknown',
      error: 'no board attached on /dev/ttyUSB3 (the attached board is board:/dev/ttyACM0)',
    });
    expect(serial.opens).toEqual([]);
  });

  it('sends the board lines kept without opening the port for a watch that does not follow', async () => {
    ring.append('board:/dev/ttyACM0', 'stdout', 'kept from an earlier capture');
    streamer.handle(watch({ sources: ['board:/dev/ttyACM0'], follow: false, tail: 10 }));
    await until(() => published.some((batch) => batch.end));
    expect(published.flatMap((batch) => batch.lines.map((line) => line.text))).toEqual([
      'kept from an earlier capture',
    ]);
    expect(serial.opens).toEqual([]);
  });

  it('leaves the board out of a watch that does not name it', async () => {
    streamer.handle(watch({ tail: 10 }));
    await until(() => published.some((batch) => batch.caughtUp));
    expect(serial.opens).toEqual([]);
  });
});
