import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PinState } from 'avr8js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../../builder/mcu/build-firmware.ts';
import { Avr8jsBoard, type PortName, type SimulatedMcu } from './avr8js-board.ts';
import { itIdentifiesAsBoardfleetFirmata } from './firmata-identity.contract.ts';
import {
  capabilityPins,
  decodeTwoByteString,
  FirmataDecoder,
  MODE,
  sysex,
  sysexReplies,
} from './firmata-messages.ts';

let outDir: string;
let hexPath: string;
let megaHexPath: string;
let nanoHexPath: string;

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'firmata-firmware-'));
  hexPath = (await buildFirmware({ recipe: 'firmata', board: 'uno', outDir: join(outDir, 'uno') })).hexPath;
  megaHexPath = (await buildFirmware({ recipe: 'firmata', board: 'mega2560', outDir: join(outDir, 'mega') }))
    .hexPath;
  nanoHexPath = (await buildFirmware({ recipe: 'firmata', board: 'nano', outDir: join(outDir, 'nano') }))
    .hexPath;
});

afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
});

/** Boots the firmware and returns the board, the decoded replies, and a send-then-run helper. */
async function boot(
  mcu: SimulatedMcu = 'atmega328p',
  firmware = mcu === 'atmega328p' ? hexPath : megaHexPath,
) {
  const board = await Avr8jsBoard.fromHex(firmware, mcu);
  const decoder = new FirmataDecoder();
  board.onTransmit((byte) => decoder.push(byte));
  await board.runFor(20);
  const exchange = async (bytes: number[], milliseconds = 30) => {
    const before = decoder.messages.length;
    board.send(bytes);
    await board.runFor(milliseconds);
    return decoder.messages.slice(before);
  };
  return { board, decoder, exchange };
}

/** Fraction of simulated time a pin spends high, and the length of its high pulses in µs. */
async function watchPin(board: Avr8jsBoard, port: PortName, bit: number, milliseconds: number) {
  const mask = 1 << bit;
  const pulsesUs: number[] = [];
  let highSince: number | undefined;
  let highCycles = 0;
  const start = board.cpu.cycles;
  board.port(port).addListener((value, oldValue) => {
    if ((value & mask) === (oldValue & mask)) return;
    if (value & mask) {
      highSince = board.cpu.cycles;
    } else if (highSince !== undefined) {
      highCycles += board.cpu.cycles - highSince;
      pulsesUs.push((board.cpu.cycles - highSince) / 16);
      highSince = undefined;
    }
  });
  await board.runFor(milliseconds);
  return { dutyCycle: highCycles / (board.cpu.cycles - start), pulsesUs };
}

describe('Boardfleet Firmata firmware on a simulated ATmega328P (avr8js)', () => {
  itIdentifiesAsBoardfleetFirmata(() => boot());

  it('lists every pin with its modes and resolutions in the capability response', async () => {
    const { exchange } = await boot();
    const [capabilities = []] = sysexReplies(await exchange(sysex(0x6b), 60), 0x6c);
    const pins = capabilityPins(capabilities);
    expect(pins).toHaveLength(20);
    expect(pins[0]).toEqual({});
    expect(pins[13]).toEqual({ [MODE.INPUT]: 1, [MODE.PULLUP]: 1, [MODE.OUTPUT]: 1, [MODE.SERVO]: 14 });
    expect(pins[3]).toMatchObject({ [MODE.PWM]: 8 });
    expect(pins[14]).toMatchObject({ [MODE.ANALOG]: 10, [MODE.INPUT]: 1 });
  });

  it('maps analog channels 0-5 to pins 14-19 in the analog mapping response', async () => {
    const { exchange } = await boot();
    const [mapping] = sysexReplies(await exchange(sysex(0x69)), 0x6a);
    expect(mapping).toEqual([...Array(14).fill(0x7f), 0, 1, 2, 3, 4, 5]);
  });

  it('drives an output from a port message and from SET_DIGITAL_PIN_VALUE, and reads it back by pin state query', async () => {
    const { board, exchange } = await boot();
    await exchange([0xf4, 13, MODE.OUTPUT]);
    // Port 1 holds pins 8-15: pin 13 is bit 5.
    await exchange([0x91, 1 << 5, 0]);
    expect(board.pinState('B', 5)).toBe(PinState.High);
    expect(sysexReplies(await exchange(sysex(0x6d, 13)), 0x6e)).toEqual([[13, MODE.OUTPUT, 1]]);
    await exchange([0xf5, 13, 0]);
    expect(board.pinState('B', 5)).toBe(PinState.Low);
    expect(sysexReplies(await exchange(sysex(0x6d, 13)), 0x6e)).toEqual([[13, MODE.OUTPUT, 0]]);
  });

  it('reports a digital input port at once when reporting starts, then whenever it changes', async () => {
    const { board, exchange } = await boot();
    board.setInput('D', 2, false);
    await exchange([0xf4, 2, MODE.INPUT]);
    expect(await exchange([0xd0, 1])).toContainEqual({ kind: 'digital', port: 0, value: 0 });
    board.setInput('D', 2, true);
    await board.runFor(5);
    expect(await exchange([])).toEqual([]);
    board.setInput('D', 2, false);
    const changes = await exchange([], 5);
    expect(changes).toEqual([{ kind: 'digital', port: 0, value: 0 }]);
  });

  it('enables the internal pull-up in INPUT_PULLUP mode', async () => {
    const { board, exchange } = await boot();
    await exchange([0xf4, 4, MODE.PULLUP]);
    expect(board.pinState('D', 4)).toBe(PinState.InputPullUp);
  });

  it('samples an analog input at the sampling interval once the pin is in ANALOG mode, and stops when asked', async () => {
    const { board, decoder, exchange } = await boot();
    board.setAnalogVolts(0, 2.5);
    await exchange([...sysex(0x7a, 100, 0), 0xf4, 14, MODE.ANALOG]);
    const start = decoder.messages.length;
    await board.runFor(1000);
    const samples = decoder.messages.slice(start).filter((message) => message.kind === 'analog');
    expect(samples.length).toBeGreaterThanOrEqual(9);
    expect(samples.length).toBeLessThanOrEqual(11);
    for (const sample of samples) expect(sample).toEqual({ kind: 'analog', channel: 0, value: 512 });
    await exchange([0xc0, 0]);
    expect((await exchange([], 300)).filter((message) => message.kind === 'analog')).toEqual([]);
  });

  it('sets a PWM duty cycle from an analog message and from EXTENDED_ANALOG', async () => {
    const { board, exchange } = await boot();
    await exchange([0xf4, 3, MODE.PWM, 0xe3, 64 & 0x7f, 64 >> 7]);
    expect((await watchPin(board, 'D', 3, 50)).dutyCycle).toBeCloseTo(64 / 255, 1);
    await exchange(sysex(0x6f, 3, 192 & 0x7f, 192 >> 7));
    expect((await watchPin(board, 'D', 3, 50)).dutyCycle).toBeCloseTo(192 / 255, 1);
  });

  it('generates servo pulses within the SERVO_CONFIG limits for an angle', async () => {
    const { board, exchange } = await boot();
    await exchange([...sysex(0x70, 9, 1000 & 0x7f, 1000 >> 7, 2000 & 0x7f, 2000 >> 7), 0xe9, 90, 0]);
    const { pulsesUs } = await watchPin(board, 'B', 1, 100);
    expect(pulsesUs.length).toBeGreaterThanOrEqual(4);
    for (const pulse of pulsesUs) expect(pulse).toBeCloseTo(1500, -1);
    await exchange([0xe9, 180 & 0x7f, 180 >> 7]);
    const { pulsesUs: atMaximum } = await watchPin(board, 'B', 1, 60);
    expect(atMaximum.at(-1)).toBeCloseTo(2000, -1);
  });

  it('explains a mode the pin cannot take in a string message and leaves the pin alone', async () => {
    const { board, exchange } = await boot();
    const [text] = sysexReplies(await exchange([0xf4, 2, MODE.PWM]), 0x71);
    expect(decodeTwoByteString(text ?? [])).toBe('set pin mode: mode not supported on pin 2');
    expect(board.pinState('D', 2)).toBe(PinState.Input);
  });

  it('returns every pin to a high-impedance input and stops reports on system reset', async () => {
    const { board, exchange } = await boot();
    await exchange([0xf4, 13, MODE.OUTPUT, 0xf5, 13, 1, 0xf4, 15, MODE.ANALOG]);
    expect(board.pinState('B', 5)).toBe(PinState.High);
    await exchange([0xff]);
    expect(board.pinState('B', 5)).toBe(PinState.Input);
    expect(sysexReplies(await exchange(sysex(0x6d, 13)), 0x6e)).toEqual([[13, MODE.INPUT, 0]]);
    expect((await exchange([], 100)).filter((message) => message.kind === 'analog')).toEqual([]);
  });
});

describe('Boardfleet Firmata firmware on a simulated ATmega2560 (avr8js)', () => {
  it('announces itself and lists 70 pins with 15 PWM pins and A0-A15 on pins 54-69', async () => {
    const { decoder, exchange } = await boot('atmega2560');
    expect(decoder.messages[0]).toEqual({ kind: 'version', major: 2, minor: 6 });
    const [capabilities = []] = sysexReplies(await exchange(sysex(0x6b), 150), 0x6c);
    const pins = capabilityPins(capabilities);
    expect(pins).toHaveLength(70);
    expect(pins.flatMap((modes, pin) => (MODE.PWM in modes ? [pin] : []))).toEqual([
      2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 44, 45, 46,
    ]);
    const [mapping] = sysexReplies(await exchange(sysex(0x69), 40), 0x6a);
    expect(mapping?.slice(54)).toEqual([...Array(16).keys()]);
  });

  it('drives the LED on pin 13 (PB7) and reports an input on pin 22 (PA0)', async () => {
    const { board, exchange } = await boot('atmega2560');
    await exchange([0xf4, 13, MODE.OUTPUT, 0xf5, 13, 1]);
    expect(board.pinState('B', 7)).toBe(PinState.High);
    board.setInput('A', 0, true);
    // Port 2 holds pins 16-23: pin 22 is bit 6.
    expect(await exchange([0xf4, 22, MODE.INPUT, 0xd2, 1])).toContainEqual({
      kind: 'digital',
      port: 2,
      value: 1 << 6,
    });
  });
});

describe('Boardfleet Firmata firmware built for a Nano (avr8js)', () => {
  it('adds the analog-only A6 and A7 as pins 20 and 21 and samples them', async () => {
    const { board, exchange } = await boot('atmega328p', nanoHexPath);
    const [mapping] = sysexReplies(await exchange(sysex(0x69)), 0x6a);
    expect(mapping?.slice(14)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const [capabilities = []] = sysexReplies(await exchange(sysex(0x6b), 60), 0x6c);
    expect(capabilityPins(capabilities)[21]).toEqual({ [MODE.ANALOG]: 10 });
    board.setAnalogVolts(7, 5);
    expect(await exchange([0xf4, 21, MODE.ANALOG])).toContainEqual({
      kind: 'analog',
      channel: 7,
      value: 1023,
    });
  });
});
