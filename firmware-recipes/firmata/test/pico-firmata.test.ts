import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getUf2Board } from '../../../boards/board-catalogue.ts';
import { buildUf2Firmware, type Uf2BuildResult } from '../../../builder/mcu/rp2040/build-uf2-firmware.ts';
import { expectBootablePicoUf2 } from '../../../test/support/pico-uf2-image.ts';
import { itIdentifiesAsBoardfleetFirmata } from './firmata-identity.contract.ts';
import {
  capabilityPins,
  decodeTwoByteString,
  FirmataDecoder,
  MODE,
  sysex,
  sysexReplies,
} from './firmata-messages.ts';
import { GPIOPinState, Rp2040jsPico } from './rp2040js-pico.ts';

const DIGITAL = { [MODE.INPUT]: 1, [MODE.PULLUP]: 1, [MODE.OUTPUT]: 1 };
const LED_PIN = getUf2Board('pico').ledPin;

let outDir: string;
let firmware: Uf2BuildResult;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'pico-firmata-'));
  firmware = await buildUf2Firmware({ recipe: 'firmata', board: 'pico', outDir: join(outDir, 'first') });
}, 120_000);

afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
});

/** Starts the firmware in rp2040js and returns the Pico, the decoded replies, and a send-then-run helper. */
async function boot() {
  const pico = new Rp2040jsPico(await readFile(firmware.uf2Path));
  const decoder = new FirmataDecoder();
  pico.onUartByte((byte) => decoder.push(byte));
  pico.runFor(20);
  const exchange = (bytes: number[], milliseconds = 30) => {
    const before = decoder.messages.length;
    pico.send(bytes);
    pico.runFor(milliseconds);
    return decoder.messages.slice(before);
  };
  return { pico, decoder, exchange };
}

describe('Boardfleet Firmata for the Pico (RP2040), built from the shared firmata recipe', () => {
  it('builds byte for byte the same in another folder', async () => {
    const again = await buildUf2Firmware({
      recipe: 'firmata',
      board: 'pico',
      outDir: join(outDir, 'second'),
    });
    expect(again.uf2Sha256).toBe(firmware.uf2Sha256);
    expect(await readFile(again.elfPath)).toEqual(await readFile(firmware.elfPath));
  }, 120_000);

  it('is a UF2 for the Pico whose flash starts with a sealed stage-2 boot, then the vector table', async () => {
    expectBootablePicoUf2(await readFile(firmware.uf2Path));
  });

  it('reports its size against the Pico flash and RAM', () => {
    expect(firmware.size).toMatchObject({ flashLimit: 2 * 1024 * 1024, ramLimit: 264 * 1024 });
    expect(firmware.size.flashBytes).toBeGreaterThan(1024);
    expect(firmware.size.flashBytes).toBeLessThan(16 * 1024);
    expect(firmware.size.ramBytes).toBeLessThan(1024);
  });
});

describe('Boardfleet Firmata running in rp2040js', () => {
  itIdentifiesAsBoardfleetFirmata(boot);

  it('lists GP0-GP28: the UART pins and the board-internal GP23/GP24 without modes, the ADC pins with 12 bits', async () => {
    const { exchange } = await boot();
    const [capabilities = []] = sysexReplies(exchange(sysex(0x6b), 100), 0x6c);
    const pins = capabilityPins(capabilities);
    expect(pins).toHaveLength(29);
    for (const pin of [0, 1, 23, 24]) expect(pins[pin]).toEqual({});
    expect(pins[2]).toEqual({ ...DIGITAL, [MODE.PWM]: 8 });
    expect(pins[LED_PIN]).toEqual({ ...DIGITAL, [MODE.PWM]: 8 });
    for (const pin of [26, 27, 28])
      expect(pins[pin]).toEqual({ ...DIGITAL, [MODE.ANALOG]: 12, [MODE.PWM]: 8 });
    expect(pins.some((modes) => MODE.SERVO in modes)).toBe(false);
  });

  it('maps ADC inputs 0-2 to GP26-GP28 in the analog mapping response', async () => {
    const { exchange } = await boot();
    const [mapping] = sysexReplies(exchange(sysex(0x69)), 0x6a);
    expect(mapping).toEqual([...Array(26).fill(0x7f), 0, 1, 2]);
  });

  it('drives the LED on GP25 from a port message and from SET_DIGITAL_PIN_VALUE, and reads it back', async () => {
    const { pico, exchange } = await boot();
    exchange([0xf4, LED_PIN, MODE.OUTPUT]);
    expect(pico.pinState(LED_PIN)).toBe(GPIOPinState.Low);
    // Port 3 holds pins 24-31: GP25 is bit 1.
    exchange([0x93, 1 << 1, 0]);
    expect(pico.pinState(LED_PIN)).toBe(GPIOPinState.High);
    expect(sysexReplies(exchange(sysex(0x6d, LED_PIN)), 0x6e)).toEqual([[LED_PIN, MODE.OUTPUT, 1]]);
    exchange([0xf5, LED_PIN, 0]);
    expect(pico.pinState(LED_PIN)).toBe(GPIOPinState.Low);
    expect(sysexReplies(exchange(sysex(0x6d, LED_PIN)), 0x6e)).toEqual([[LED_PIN, MODE.OUTPUT, 0]]);
  });

  it('reports a digital input port at once when reporting starts, then whenever it changes', async () => {
    const { pico, exchange } = await boot();
    exchange([0xf4, 5, MODE.INPUT]);
    expect(pico.pinState(5)).toBe(GPIOPinState.Input);
    expect(exchange([0xd0, 1])).toContainEqual({ kind: 'digital', port: 0, value: 0 });
    pico.setInput(5, true);
    expect(exchange([], 5)).toEqual([{ kind: 'digital', port: 0, value: 1 << 5 }]);
    expect(exchange([], 20)).toEqual([]);
    pico.setInput(5, false);
    expect(exchange([], 5)).toEqual([{ kind: 'digital', port: 0, value: 0 }]);
  });

  it('enables the pad pull-up in INPUT_PULLUP mode, so an open pin reads high, and floats an INPUT', async () => {
    const { pico, exchange } = await boot();
    exchange([0xf4, 6, MODE.PULLUP]);
    expect(pico.pinState(6)).toBe(GPIOPinState.InputPullUp);
    expect(exchange([0xd0, 1])).toContainEqual({ kind: 'digital', port: 0, value: 1 << 6 });
    exchange([0xf4, 6, MODE.INPUT]);
    expect(pico.pinState(6)).toBe(GPIOPinState.Input);
  });

  it('samples A0 (GP26) at the sampling interval with 12-bit values, and stops when asked', async () => {
    const { pico, decoder, exchange } = await boot();
    pico.setAdcValue(0, 3000);
    exchange([...sysex(0x7a, 100, 0), 0xc0, 1]);
    const start = decoder.messages.length;
    pico.runFor(1000);
    const samples = decoder.messages.slice(start).filter((message) => message.kind === 'analog');
    expect(samples.length).toBeGreaterThanOrEqual(9);
    expect(samples.length).toBeLessThanOrEqual(11);
    for (const sample of samples) expect(sample).toEqual({ kind: 'analog', channel: 0, value: 3000 });
    exchange([0xc0, 0]);
    expect(exchange([], 300).filter((message) => message.kind === 'analog')).toEqual([]);
  });

  it('sets a PWM duty cycle on GP2 from an analog message and on GP25 from EXTENDED_ANALOG', async () => {
    const { pico, exchange } = await boot();
    exchange([0xf4, 2, MODE.PWM, 0xe2, 64 & 0x7f, 64 >> 7]);
    expect(pico.dutyCycle(2, 20)).toBeCloseTo(64 / 255, 1);
    exchange([0xf4, LED_PIN, MODE.PWM, ...sysex(0x6f, LED_PIN, 192 & 0x7f, 192 >> 7)]);
    expect(pico.dutyCycle(LED_PIN, 20)).toBeCloseTo(192 / 255, 1);
    expect(sysexReplies(exchange(sysex(0x6d, LED_PIN)), 0x6e)).toEqual([
      [LED_PIN, MODE.PWM, 192 & 0x7f, 192 >> 7],
    ]);
  });

  it('explains a mode a pin cannot take in a string message', async () => {
    const { exchange } = await boot();
    const [servo] = sysexReplies(exchange([0xf4, 2, MODE.SERVO]), 0x71);
    expect(decodeTwoByteString(servo ?? [])).toBe('set pin mode: mode not supported on pin 2');
    const [uart] = sysexReplies(exchange([0xf4, 0, MODE.OUTPUT]), 0x71);
    expect(decodeTwoByteString(uart ?? [])).toBe('set pin mode: mode not supported on pin 0');
  });

  it('returns every pin to an input and stops reports on system reset', async () => {
    const { pico, exchange } = await boot();
    exchange([0xf4, LED_PIN, MODE.OUTPUT, 0xf5, LED_PIN, 1, 0xc1, 1]);
    expect(pico.pinState(LED_PIN)).toBe(GPIOPinState.High);
    exchange([0xff]);
    expect(pico.pinState(LED_PIN)).toBe(GPIOPinState.Input);
    expect(sysexReplies(exchange(sysex(0x6d, LED_PIN)), 0x6e)).toEqual([[LED_PIN, MODE.INPUT, 0]]);
    expect(exchange([], 100).filter((message) => message.kind === 'analog')).toEqual([]);
  });

  it('sleeps (WFI) through most of its time when idle', async () => {
    const { pico } = await boot();
    const [startNanos, startWaiting] = [pico.nowMs * 1e6, pico.waitingNanos];
    pico.runFor(500);
    expect((pico.waitingNanos - startWaiting) / (pico.nowMs * 1e6 - startNanos)).toBeGreaterThan(0.95);
  });
});
