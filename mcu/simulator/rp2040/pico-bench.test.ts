import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUf2Firmware } from '../../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { ControlChannel } from '../control-channel.ts';
import { findRunningBench, type SimulatedBoard, startSimulatedBoard } from '../simulated-board.ts';

/** rp2040js runs in real time beside other tests on a loaded machine: room for every step. */
const SLOW = 120_000;
const ANSWER_MS = 20_000;
const REPORT_VERSION = [0xf9, 0x02, 0x06];
const SET_PIN_MODE = 0xf4;
const SET_DIGITAL_PIN_VALUE = 0xf5;
const [INPUT, OUTPUT] = [0, 1];

let scratch: string;
let uf2Path: string;

/** A host on the bench Pico's port: what the board sent, and a way to wait for what it will send. */
class Host {
  received: number[] = [];
  private constructor(private readonly port: SerialPort) {
    port.on('data', (chunk: Buffer) => this.received.push(...chunk));
  }

  static open(path: string): Promise<Host> {
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path, baudRate: 57_600 }, (error) =>
        error ? reject(error) : resolve(new Host(port)),
      );
    });
  }

  send(bytes: number[]): void {
    this.port.write(Buffer.from(bytes));
  }

  /** Resolves once `found` finds what it looks for in the bytes received so far. */
  async waitFor<T>(what: string, found: (bytes: number[]) => T | undefined): Promise<T> {
    const deadline = performance.now() + ANSWER_MS;
    for (;;) {
      const result = found(this.received);
      if (result !== undefined) return result;
      if (performance.now() > deadline)
        throw new Error(
          `no ${what} within ${ANSWER_MS} ms; got ${Buffer.from(this.received).toString('hex')}`,
        );
      await new Promise((resolve) => this.port.once('data', resolve).once('close', resolve));
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.port.close(() => resolve()));
  }
}

/** The index just past the first occurrence of `pattern` in `bytes`, if there is one. */
function endOf(bytes: number[], pattern: number[]): number | undefined {
  for (let at = 0; at + pattern.length <= bytes.length; at++)
    if (pattern.every((byte, i) => bytes[at + i] === byte)) return at + pattern.length;
  return undefined;
}

/** The value of the last 3-byte message whose command byte is `command`. */
function lastValue(bytes: number[], command: number): number | undefined {
  for (let at = bytes.length - 3; at >= 0; at--)
    if (bytes[at] === command) return bytes[at + 1]! | (bytes[at + 2]! << 7);
  return undefined;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'pico-bench-'));
  ({ uf2Path } = await buildUf2Firmware({
    recipe: 'firmata',
    board: 'pico',
    outDir: join(scratch, 'build'),
  }));
}, SLOW);

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('a simulated Pico (rp2040js) running our Firmata', () => {
  let pico: SimulatedBoard;
  const stateDir = () => join(scratch, 'pico');

  beforeAll(async () => {
    pico = await startSimulatedBoard({
      board: 'pico',
      stateDir: stateDir(),
      firmwareUf2: uf2Path,
      cacheDir: join(scratch, 'cache'),
    });
  }, SLOW);

  afterAll(async () => {
    await pico?.stop();
  });

  it('comes up on a pty in its state directory and says so in bench.pid', async () => {
    expect(pico.portPath).toBe(join(stateDir(), 'tty'));
    expect(existsSync(pico.portPath)).toBe(true);
    expect(await findRunningBench(stateDir())).toEqual({
      stateDir: stateDir(),
      pid: pico.pid,
      portPath: pico.portPath,
      board: 'pico',
    });
  });

  it(
    'resets when a host opens the port: the firmware announces its version on every open',
    async () => {
      for (let open = 0; open < 2; open++) {
        const host = await Host.open(pico.portPath);
        try {
          await host.waitFor('REPORT_VERSION at start-up', (bytes) => endOf(bytes, REPORT_VERSION));
        } finally {
          await host.close();
        }
      }
    },
    SLOW,
  );

  it(
    'shows the LED (GP25) the firmware drives as pin events',
    async () => {
      const host = await Host.open(pico.portPath);
      try {
        await host.waitFor('REPORT_VERSION', (bytes) => endOf(bytes, REPORT_VERSION));
        const changes: number[] = [];
        const unsubscribe = pico.onPinChange('LED', (level) => changes.push(level));
        host.send([SET_PIN_MODE, 25, OUTPUT, SET_DIGITAL_PIN_VALUE, 25, 1]);
        await pico.waitForPin('LED', 1, ANSWER_MS);
        host.send([SET_DIGITAL_PIN_VALUE, 25, 0]);
        await pico.waitForPin('GP25', 0, ANSWER_MS);
        unsubscribe();
        expect(changes).toEqual([1, 0]);
      } finally {
        await host.close();
      }
    },
    SLOW,
  );

  it(
    'feeds a button on GP2 and 1.65 V on A0 (GP26) to the firmware',
    async () => {
      const host = await Host.open(pico.portPath);
      try {
        await host.waitFor('REPORT_VERSION', (bytes) => endOf(bytes, REPORT_VERSION));
        await pico.setDigitalInput('GP2', 1);
        expect(await pico.readPin('GP2')).toBe(1);
        // GP2 as an input, reports on for port 0 (GP0..GP7) and for analog channel 0.
        host.send([SET_PIN_MODE, 2, INPUT, 0xd0, 1, 0xc0, 1]);
        const port0 = await host.waitFor('a digital report of GP2 high', (bytes) => {
          const value = lastValue(bytes, 0x90);
          return value !== undefined && value & 0b100 ? value : undefined;
        });
        expect(port0 & 0b100).toBe(0b100);
        await pico.setAnalogMillivolts('A0', 1650);
        // 12 bits against 3.3 V: half of 4095.
        const reading = await host.waitFor('an analog report near 2048', (bytes) => {
          const value = lastValue(bytes, 0xe0);
          return value !== undefined && Math.abs(value - 2048) <= 8 ? value : undefined;
        });
        expect(reading).toBeCloseTo(2048, -1);
        await pico.setDigitalInput('GP2', 0);
        await host.waitFor('a digital report of GP2 low', (bytes) => {
          const value = lastValue(bytes, 0x90);
          return value !== undefined && !(value & 0b100) ? value : undefined;
        });
      } finally {
        await host.close();
      }
    },
    SLOW,
  );

  it('refuses a voltage above the Pico’s 3.3 V and a pin it does not have', async () => {
    await expect(pico.setAnalogMillivolts('A0', 3400)).rejects.toThrow(
      '3400 mV is outside 0..3300 mV on the Raspberry Pi Pico',
    );
    await expect(pico.readPin('GP29')).rejects.toThrow('Raspberry Pi Pico has no pin "GP29"');
  });
});

describe('stopping and starting a simulated Pico', () => {
  it(
    'leaves no process, port or pid file behind, and keeps its flash for the next start',
    async () => {
      const stateDir = join(scratch, 'restarted');
      const options = { board: 'pico', stateDir, cacheDir: join(scratch, 'cache') };
      const first = await startSimulatedBoard({ ...options, firmwareUf2: uf2Path });
      await first.stop();
      expect(() => process.kill(first.pid, 0)).toThrow();
      expect(existsSync(join(stateDir, 'tty'))).toBe(false);
      expect(await findRunningBench(stateDir)).toBeUndefined();

      const again = await startSimulatedBoard(options);
      try {
        const host = await Host.open(again.portPath);
        await host.waitFor('REPORT_VERSION from the kept flash', (bytes) => endOf(bytes, REPORT_VERSION));
        await host.close();
      } finally {
        await again.stop();
      }
    },
    SLOW,
  );

  it(
    'halts with no stage-2 boot in its flash, where a real Pico would show its BOOTSEL drive',
    async () => {
      const blank = await startSimulatedBoard({
        board: 'pico',
        stateDir: join(scratch, 'blank'),
        cacheDir: join(scratch, 'cache'),
      });
      const control = await ControlChannel.connect(join(blank.stateDir, 'control.sock'));
      try {
        expect((await control.command('status'))[0]).toBe('state=halted');
      } finally {
        control.close();
        await blank.stop();
      }
    },
    SLOW,
  );
});
