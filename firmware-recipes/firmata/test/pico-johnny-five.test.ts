import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import firmataIo from 'firmata-io';
import five, { type Board } from 'johnny-five';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getUf2Board } from '../../../boards/board-catalogue.ts';
import { buildUf2Firmware } from '../../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { GPIOPinState, Rp2040jsPico, Rp2040jsTransport } from './rp2040js-pico.ts';

const LED_PIN = getUf2Board('pico').ledPin;

let outDir: string;
let pico: Rp2040jsPico;
let transport: Rp2040jsTransport;
let io: InstanceType<typeof firmataIo.Firmata>;
let board: Board;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'pico-johnny-five-'));
  const { uf2Path } = await buildUf2Firmware({ recipe: 'firmata', board: 'pico', outDir });
  pico = new Rp2040jsPico(await readFile(uf2Path));
  transport = new Rp2040jsTransport(pico);
  io = new firmataIo.Firmata(transport);
  board = new five.Board({ io, repl: false, debug: false, sigint: false, timeout: 20_000 });
  await new Promise<void>((resolve, reject) => {
    board.once('ready', () => resolve());
    board.once('error', reject);
  });
}, 120_000);

afterAll(async () => {
  await new Promise((resolve) => transport?.close(resolve));
  await rm(outDir, { recursive: true, force: true });
});

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('johnny-five driving our Firmata firmware on an rp2040js-simulated Pico', () => {
  it('learns the 29 pins and the 12-bit ADC from the capability response', () => {
    // Where firmata-io keeps the resolutions the response gives (johnny-five's Sensor scales by them).
    const { RESOLUTION } = io as unknown as { RESOLUTION: { ADC: number; PWM: number } };
    expect(RESOLUTION).toEqual({ ADC: 4095, PWM: 255, DAC: null });
    expect(io.pins).toHaveLength(29);
  });

  it('lights the LED on GP25 with Led.on() and off with Led.off()', async () => {
    const led = new five.Led({ pin: LED_PIN, board });
    led.on();
    await until(() => pico.pinState(LED_PIN) === GPIOPinState.High, 'GP25 to go high');
    led.off();
    await until(() => pico.pinState(LED_PIN) === GPIOPinState.Low, 'GP25 to go low');
  });

  it('dims the LED with Led.brightness(), through PWM', async () => {
    const led = new five.Led({ pin: LED_PIN, board });
    led.brightness(64);
    await until(() => io.pins[LED_PIN]?.value === 64, 'the brightness to be sent');
    // Paused, so the measurement runs on simulated time alone.
    await pico.stop();
    try {
      expect(pico.dutyCycle(LED_PIN, 20)).toBeCloseTo(64 / 255, 1);
    } finally {
      pico.start();
    }
    led.off();
  });

  it('sees a press on GP15 through a Button', async () => {
    pico.setInput(15, false);
    const reported = new Promise<void>((resolve) => io.once('digital-read-15', () => resolve()));
    const button = new five.Button({ pin: 15, board });
    const pressed = new Promise<void>((resolve) => button.once('press', () => resolve()));
    // The firmware reports the port as soon as the Button turns its reporting on: from then on a press is seen.
    await reported;
    pico.setInput(15, true);
    await pressed;
    expect(button.isDown).toBe(true);
  });

  it('reads A0 (GP26) through a Sensor, 12 bits wide', async () => {
    pico.setAdcValue(0, 2048);
    const sensor = new five.Sensor({ pin: 'A0', board, freq: 25 });
    await until(() => sensor.value === 2048, 'A0 to read 2048 of 4095');
  });
});
