import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PinState } from 'avr8js';
import firmataIo from 'firmata-io';
import five, { type Board } from 'johnny-five';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../../builder/mcu/build-firmware.ts';
import { Avr8jsBoard, Avr8jsTransport } from './avr8js-board.ts';

let outDir: string;
let simulated: Avr8jsBoard;
let transport: Avr8jsTransport;
let board: Board;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'firmata-johnny-five-'));
  const { hexPath } = await buildFirmware({ recipe: 'firmata', board: 'uno', outDir });
  simulated = await Avr8jsBoard.fromHex(hexPath);
  transport = new Avr8jsTransport(simulated);
  const io = new firmataIo.Firmata(transport);
  board = new five.Board({ io, repl: false, debug: false, sigint: false, timeout: 20_000 });
  await new Promise<void>((resolve, reject) => {
    board.once('ready', () => resolve());
    board.once('error', reject);
  });
});

afterAll(async () => {
  await new Promise((resolve) => transport?.close(resolve));
  await rm(outDir, { recursive: true, force: true });
});

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('johnny-five driving our Firmata firmware on an avr8js-simulated Uno', () => {
  it('lights pin 13 (PB5) with Led.on()', async () => {
    new five.Led({ pin: 13, board }).on();
    await until(() => simulated.pinState('B', 5) === PinState.High, 'PB5 to go high');
  });

  it('sees a press on D2 through a Button', async () => {
    simulated.setInput('D', 2, false);
    const reported = new Promise<void>((resolve) => board.io.once('digital-read-2', () => resolve()));
    const button = new five.Button({ pin: 2, board });
    const pressed = new Promise<void>((resolve) => button.once('press', () => resolve()));
    // The firmware reports D2 as soon as the Button turns its port's reporting on: from then on a press is seen.
    await reported;
    simulated.setInput('D', 2, true);
    await pressed;
    expect(button.isDown).toBe(true);
  });

  it('reads the voltage on A0 through a Sensor', async () => {
    simulated.setAnalogVolts(0, 1.25);
    const sensor = new five.Sensor({ pin: 'A0', board, freq: 25 });
    await until(() => sensor.value === 256, 'A0 to read 256 (1.25 V of 5 V)');
  });
});
