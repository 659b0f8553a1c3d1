import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import firmataIo from 'firmata-io';
import five, { type Board } from 'johnny-five';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { flashBoard } from '../../mcu/flasher/flash-board.ts';
import { FIRMATA_BAUD_RATE } from '../../mcu/probe/serial-transport.repository.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';

const execFileAsync = promisify(execFile);
const temporary = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** The two ways firmware reaches the board: our flasher, and Debian's avrdude as the reference. */
const FLASHERS: Array<[string, (hexPath: string, portPath: string) => Promise<void>]> = [
  [
    'boardfleet flash',
    async (hexPath, portPath) => {
      await flashBoard({ board: 'uno', hexPath, portPath });
    },
  ],
  [
    'avrdude -c arduino',
    async (hexPath, portPath) => {
      await execFileAsync('avrdude', [
        '-q',
        '-q',
        '-c',
        'arduino',
        '-p',
        'm328p',
        '-b',
        '115200',
        '-P',
        portPath,
        '-U',
        `flash:w:${hexPath}:i`,
      ]).catch((error: { code?: number | string; stderr?: string }) => {
        if (error.code === 'ENOENT')
          throw new Error('avrdude is not installed: sudo apt-get install avrdude');
        // avrdude 7.1 asks a pty for its modem lines on close and complains; the flash is done by then.
        if (!/^(avrdude OS error: ioctl\("TIOCMGET"\)[^\n]*\n?)+$/.test(error.stderr ?? '')) throw error;
      });
    },
  ],
];

describe.each(FLASHERS)(
  'our Firmata firmware flashed by %s onto a simulated Uno, driven by johnny-five',
  (_name, flash) => {
    let simulated: SimulatedBoard;
    let board: Board;
    let transport: SerialPort;

    beforeAll(async () => {
      const { hexPath } = await buildFirmware({
        recipe: 'firmata',
        board: 'uno',
        outDir: temporary('e2e-firmata-'),
      });
      simulated = await startSimulatedBoard({ board: 'uno', stateDir: temporary('e2e-uno-') });
      await flash(hexPath, simulated.portPath);
      // firmata-io over serialport 13, as `boardfleet repl` does (mcu/johnny-five/firmata-board.ts); johnny-five's
      // own `new Board({ port })` works too (its serialport 8 is built by npm ci): johnny-five.e2e.test.ts.
      // Opened by the port itself, after firmata-io listens: johnny-five waits for its "connect" (the port's "open").
      transport = new SerialPort({ path: simulated.portPath, baudRate: FIRMATA_BAUD_RATE });
      board = new five.Board({
        io: new firmataIo.Firmata(transport),
        repl: false,
        debug: false,
        sigint: false,
        timeout: 20_000,
      });
      await new Promise<void>((resolve, reject) => {
        board.once('ready', () => resolve());
        board.once('error', reject);
      });
    });
    afterAll(async () => {
      if (transport?.isOpen) await new Promise((resolve) => transport.close(resolve));
      await simulated?.stop();
    });

    it('lights the LED on pin 13 with Led.on(), seen on the simulated pin', async () => {
      await simulated.waitForPin('D13', 0, 1000);
      new five.Led({ pin: 13, board }).on();
      await simulated.waitForPin('D13', 1, 5000);
    });

    it('sees a press of a button on D2', async () => {
      await simulated.setDigitalInput('D2', 0);
      const reported = new Promise<void>((resolve) => board.io.once('digital-read-2', () => resolve()));
      const button = new five.Button({ pin: 2, board });
      const pressed = new Promise<void>((resolve) => button.once('press', () => resolve()));
      // The firmware reports D2 as soon as the Button turns its port's reporting on: from then on a press is seen.
      await reported;
      await simulated.setDigitalInput('D2', 1);
      await pressed;
      expect(button.isDown).toBe(true);
    });

    it('reads the voltage on A0 through a Sensor', async () => {
      await simulated.setAnalogMillivolts('A0', 1250);
      const sensor = new five.Sensor({ pin: 'A0', board, freq: 25 });
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && Math.abs(sensor.value - 256) > 2)
        await new Promise((resolve) => setTimeout(resolve, 25));
      // 1.25 V of the 5 V reference is a quarter of the 10-bit range.
      expect(Math.abs(sensor.value - 256)).toBeLessThanOrEqual(2);
    });
  },
);
