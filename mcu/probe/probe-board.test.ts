import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Avr8jsBoard, Avr8jsTransport } from '../../firmware-recipes/firmata/test/avr8js-board.ts';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { probeBoard } from './probe-board.ts';

let outDir: string;
let firmataHex: string;
let blinkHex: string;
let helloHex: string;

const fixtures = join(import.meta.dirname, '../../builder/mcu/fixtures');

beforeAll(async () => {
  outDir = await mkdtemp(join(tmpdir(), 'probe-board-'));
  const build = async (input: { recipe: string } | { sketchPath: string }, name: string) =>
    (await buildFirmware({ ...input, board: 'uno', outDir: join(outDir, name) })).hexPath;
  firmataHex = await build({ recipe: 'firmata' }, 'firmata');
  blinkHex = await build({ sketchPath: join(fixtures, 'blink') }, 'blink');
  helloHex = await build({ sketchPath: join(fixtures, 'hello-serial') }, 'hello');
});

afterAll(async () => {
  await rm(outDir, { recursive: true, force: true });
});

/** Stands in for the serial port: the .hex runs on an avr8js-simulated ATmega328P. */
const simulatedUnoRunning = (hexPath: string) => async () =>
  new Avr8jsTransport(await Avr8jsBoard.fromHex(hexPath));

describe('probeBoard', () => {
  it('reports the firmware, pins, latency and a passing LED self-test for our Firmata firmware', async () => {
    const result = await probeBoard({
      portPath: 'avr8js',
      timeoutMs: 8000,
      openTransport: simulatedUnoRunning(firmataHex),
    });
    expect(result.status).toBe('firmata');
    if (result.status !== 'firmata') return;
    expect(result.firmware).toEqual({ name: 'BoardfleetFirmata', version: '1.0' });
    expect(result.protocolVersion).toBe('2.6');
    expect(result.pinCount).toBe(20);
    expect(result.analogPinCount).toBe(6);
    expect(result.capabilities.PWM).toEqual([3, 5, 6, 9, 10, 11]);
    expect(result.capabilities.ANALOG).toEqual([14, 15, 16, 17, 18, 19]);
    expect(result.latencyMs.median).toBeGreaterThan(0);
    expect(result.selfTest).toEqual({
      pin: 13,
      passed: true,
      steps: [
        { wrote: 1, readBack: 1 },
        { wrote: 0, readBack: 0 },
      ],
    });
  });

  it('reports "not Firmata", without hanging, for a board running a plain blink sketch', async () => {
    const started = Date.now();
    const result = await probeBoard({
      portPath: 'avr8js',
      timeoutMs: 2000,
      openTransport: simulatedUnoRunning(blinkHex),
    });
    expect(result).toMatchObject({ status: 'not-firmata', bytesReceived: 0 });
    if (result.status === 'not-firmata')
      expect(result.reason).toMatch(/silent, so it is not running Firmata/);
    expect(Date.now() - started).toBeLessThan(4000);
  });

  it('reports "not Firmata" for a board that talks, but not Firmata', async () => {
    const result = await probeBoard({
      portPath: 'avr8js',
      timeoutMs: 2000,
      openTransport: simulatedUnoRunning(helloHex),
    });
    expect(result.status).toBe('not-firmata');
    if (result.status !== 'not-firmata') return;
    expect(result.bytesReceived).toBeGreaterThan(0);
    expect(result.reason).toMatch(/sent \d+ bytes in 2000 ms but no Firmata handshake/);
  });

  it('refuses a port that cannot be opened with an error naming the port', async () => {
    await expect(
      probeBoard({ portPath: '/dev/ttyBoardfleetMissing', timeoutMs: 1000 }),
    ).rejects.toMatchObject({
      code: 'port-open-failed',
      message: expect.stringContaining('/dev/ttyBoardfleetMissing'),
    });
  });
});
