import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getBoard } from '../../boards/board-catalogue.ts';
import { AvrToolchain } from '../build/avr-toolchain.repository.ts';
import { buildFirmware } from '../build/build-firmware.ts';
import { probeBoard } from '../probe/probe-board.ts';
import { BenchBuild } from './bench-build.repository.ts';
import { BOOTLOADER_RECIPES } from './bootloaders.ts';
import { SimulatedBoard } from './simulated-board.ts';

const run = promisify(execFile);
const temporary = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** Debian's avrdude, the reference programmer: it proves the simulated board is faithful, independently of our flasher. */
async function avrdude(args: string[]): Promise<string> {
  try {
    const { stderr } = await run('avrdude', args, { timeout: 60_000 });
    return stderr;
  } catch (error) {
    const failure = error as { code?: string; stderr?: string };
    if (failure.code === 'ENOENT') throw new Error('avrdude is not installed: sudo apt-get install avrdude');
    throw new Error(`avrdude failed: ${failure.stderr ?? String(error)}`);
  }
}

/** Intervals between the LED's edges, in milliseconds. */
async function ledEdges(board: SimulatedBoard, count: number): Promise<number[]> {
  const times: number[] = [];
  let level = await board.readPin('D13');
  while (times.length < count) {
    level = level === 1 ? 0 : 1;
    await board.waitForPin('D13', level, 3000);
    times.push(performance.now());
  }
  return times.slice(1).map((time, i) => time - times[i]!);
}

describe('bootloaders built from Debian sources', () => {
  it.each(Object.entries(BOOTLOADER_RECIPES))(
    '%s fits its boot section, ends inside the flash, and builds to the same bytes twice',
    async (id, recipe) => {
      const first = await new BenchBuild(temporary('bench-cache-')).bootloader(id);
      const second = await new BenchBuild(temporary('bench-cache-')).bootloader(id);
      expect(first.bytes).toBeLessThanOrEqual(recipe.maxBytes);
      expect(readFileSync(first.hexPath, 'utf8')).toBe(readFileSync(second.hexPath, 'utf8'));
      const flashSize = recipe.mcu === 'atmega2560' ? 256 * 1024 : 32 * 1024;
      let extended = 0;
      for (const line of readFileSync(first.hexPath, 'utf8').trim().split('\n')) {
        const length = Number.parseInt(line.slice(1, 3), 16);
        const address = Number.parseInt(line.slice(3, 7), 16);
        const type = line.slice(7, 9);
        if (type === '02') extended = Number.parseInt(line.slice(9, 13), 16) * 16;
        if (type === '04') extended = Number.parseInt(line.slice(9, 13), 16) * 65536;
        if (type === '00') {
          expect(extended + address).toBeGreaterThanOrEqual(recipe.address);
          expect(extended + address + length).toBeLessThanOrEqual(flashSize);
        }
      }
    },
  );

  it('optiboot comes out at about 500 bytes, as it does for the Arduino IDE', async () => {
    const optiboot = await new BenchBuild(temporary('bench-cache-')).bootloader('optiboot-atmega328');
    expect(optiboot.bytes).toBeGreaterThan(450);
    expect(optiboot.bytes).toBeLessThanOrEqual(512);
  });

  it('names the Debian packages when the AVR toolchain is missing', async () => {
    const build = new BenchBuild(temporary('bench-cache-'), new AvrToolchain('/nonexistent'));
    await expect(build.bootloader('optiboot-atmega328')).rejects.toThrow(
      'Install it with: sudo apt-get install gcc-avr binutils-avr',
    );
  });

  it('refuses to simulate the Leonardo, whose bootloader needs native USB', async () => {
    await expect(SimulatedBoard.start({ board: 'leonardo', stateDir: temporary('bench-') })).rejects.toThrow(
      'native USB, which simavr cannot simulate',
    );
  });
});

describe('a simulated Uno running the real optiboot', () => {
  let board: SimulatedBoard;
  let stateDir: string;
  let blinkHex: string;

  beforeAll(async () => {
    stateDir = temporary('bench-uno-');
    board = await SimulatedBoard.start({ board: 'uno', stateDir });
    blinkHex = (
      await buildFirmware({
        sketchPath: new URL('../build/fixtures/blink', import.meta.url).pathname,
        board: 'uno',
        outDir: temporary('blink-'),
      })
    ).hexPath;
  });
  afterAll(async () => {
    await board?.stop();
  });

  it('takes a sketch from avrdude -c arduino at 115200 baud, verifies it, and runs it in real time', async () => {
    const log = await avrdude([
      '-c',
      'arduino',
      '-p',
      'm328p',
      '-b',
      '115200',
      '-P',
      board.portPath,
      '-U',
      `flash:w:${blinkHex}:i`,
    ]);
    expect(log).toMatch(/bytes of flash verified/);
    // The blink sketch toggles the LED every 500 ms of simulated time: real time, within scheduling noise.
    const intervals = await ledEdges(board, 5);
    for (const interval of intervals) {
      expect(interval).toBeGreaterThan(400);
      expect(interval).toBeLessThan(650);
    }
  });

  it('keeps what was flashed across a restart, as a real board does across a power cycle', async () => {
    await board.stop();
    board = await SimulatedBoard.start({ board: 'uno', stateDir });
    // Power-on: optiboot sees no external reset and starts the sketch.
    const intervals = await ledEdges(board, 3);
    expect(intervals.every((interval) => interval > 400 && interval < 650)).toBe(true);
  });

  it('refuses a second board on the same state dir', async () => {
    await expect(SimulatedBoard.start({ board: 'uno', stateDir })).rejects.toThrow(/already runs in/);
  });
});

describe('a simulated Mega 2560 running the real STK500v2 bootloader', () => {
  it('takes our Firmata firmware from avrdude -c wiring and answers the Firmata probe', async () => {
    const board = await SimulatedBoard.start({ board: 'mega2560', stateDir: temporary('bench-mega-') });
    try {
      const { hexPath } = await buildFirmware({
        recipe: 'firmata',
        board: 'mega2560',
        outDir: temporary('firmata-mega-'),
      });
      const log = await avrdude([
        '-c',
        'wiring',
        '-p',
        'm2560',
        '-b',
        '115200',
        '-D',
        '-P',
        board.portPath,
        '-U',
        `flash:w:${hexPath}:i`,
      ]);
      expect(log).toMatch(/bytes of flash verified/);
      const probe = await probeBoard({ portPath: board.portPath, ledPin: getBoard('mega2560').ledPin });
      expect(probe).toMatchObject({ status: 'firmata', pinCount: 70, selfTest: { passed: true } });
    } finally {
      await board.stop();
    }
  });
});

describe('a simulated Nano with the old bootloader', () => {
  it('takes a sketch from avrdude at 57600 baud, not at 115200', async () => {
    const board = await SimulatedBoard.start({
      board: 'nano:old-bootloader',
      stateDir: temporary('bench-nano-'),
    });
    try {
      const { hexPath } = await buildFirmware({
        sketchPath: new URL('../build/fixtures/blink', import.meta.url).pathname,
        board: 'nano',
        outDir: temporary('blink-nano-'),
      });
      await expect(
        avrdude([
          '-c',
          'arduino',
          '-p',
          'm328p',
          '-b',
          '115200',
          '-x',
          'attempts=1',
          '-P',
          board.portPath,
          '-U',
          `flash:w:${hexPath}:i`,
        ]),
      ).rejects.toThrow(/unable to open programmer|not in sync|not responding/);
      const log = await avrdude([
        '-c',
        'arduino',
        '-p',
        'm328p',
        '-b',
        '57600',
        '-P',
        board.portPath,
        '-U',
        `flash:w:${hexPath}:i`,
      ]);
      expect(log).toMatch(/bytes of flash verified/);
      await ledEdges(board, 2);
    } finally {
      await board.stop();
    }
  });
});
