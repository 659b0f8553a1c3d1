import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { HostTools } from './host-tools.repository.ts';
import { findRunningBench, type SimulatedBoard, startSimulatedBoard } from './simulated-board.ts';

const BLINK_SKETCH = new URL('../../builder/mcu/fixtures/blink', import.meta.url).pathname;
const tools = new HostTools();
let scratch: string;
const started: SimulatedBoard[] = [];

async function start(board: string, stateDir: string, firmwareHex?: string): Promise<SimulatedBoard> {
  const simulated = await startSimulatedBoard({
    board,
    stateDir,
    firmwareHex,
    cacheDir: join(scratch, 'cache'),
  });
  started.push(simulated);
  return simulated;
}

async function stop(simulated: SimulatedBoard): Promise<void> {
  started.splice(started.indexOf(simulated), 1);
  await simulated.stop();
}

/** Debian's avrdude, independent of Boardfleet's own flasher; fails naming the package when absent. */
async function avrdude(args: string[]): Promise<{ output: string; ms: number }> {
  await tools.require('avrdude');
  const begun = performance.now();
  const { stderr } = await tools.run('avrdude', args, undefined, 45_000);
  return { output: stderr, ms: performance.now() - begun };
}

/** Opens the port (which resets the board) and collects what it sends until `done` says so. */
async function talk(
  portPath: string,
  send: (port: SerialPort) => void,
  done: (received: Buffer) => boolean,
  timeoutMs = 8000,
): Promise<Buffer> {
  const port = new SerialPort({ path: portPath, baudRate: 57_600 });
  let received = Buffer.alloc(0);
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no answer, got ${received.toString('hex')}`)),
        timeoutMs,
      );
      port.on('data', (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (done(received)) {
          clearTimeout(timer);
          resolve(received);
        }
      });
      port.on('open', () => send(port));
      port.on('error', reject);
    });
  } finally {
    await new Promise((resolve) => port.close(resolve));
  }
}

/** Firmata's version report (0xF9 major minor): sent at start-up and on request. */
function firmataVersion(received: Buffer): number[] | undefined {
  const at = received.indexOf(0xf9);
  return at >= 0 && received.length >= at + 3 ? [received[at + 1]!, received[at + 2]!] : undefined;
}

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'boardfleet-bench-'));
});
afterEach(async () => {
  for (const simulated of started.splice(0)) await simulated.stop();
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('a simulated Uno, as a host sees it', () => {
  it('takes Firmata from avrdude over its serial port, verifies it, and runs it after the reset', async () => {
    const firmata = await buildFirmware({
      recipe: 'firmata',
      board: 'uno',
      outDir: join(scratch, 'firmata'),
    });
    const uno = await start('uno', join(scratch, 'uno-firmata'));

    const flashing = await avrdude([
      '-c',
      'arduino',
      '-p',
      'm328p',
      '-b',
      '115200',
      '-P',
      uno.portPath,
      '-U',
      `flash:w:${firmata.hexPath}:i`,
    ]);
    expect(flashing.output).toMatch(/device signature = 0x1e950f/);
    expect(flashing.output).toMatch(/bytes of flash verified/);
    console.info(
      `avrdude flashed ${firmata.size.flashBytes} bytes of Firmata in ${Math.round(flashing.ms)} ms`,
    );

    // Opening the port resets the board (as DTR does); optiboot waits a second, then Firmata starts.
    for (let open = 0; open < 3; open++) {
      const received = await talk(
        uno.portPath,
        () => undefined,
        (bytes) => firmataVersion(bytes) !== undefined,
      );
      expect(firmataVersion(received)).toEqual([2, 6]);
    }
  });

  it('feeds a button on D2 and a voltage on A0 to the firmware', async () => {
    const firmata = await buildFirmware({
      recipe: 'firmata',
      board: 'uno',
      outDir: join(scratch, 'firmata'),
    });
    const uno = await start('uno', join(scratch, 'uno-inputs'), firmata.hexPath);
    await uno.setDigitalInput('D2', 1);
    await uno.setAnalogMillivolts('A0', 2500);

    const analogReport = (bytes: Buffer) => {
      for (let at = bytes.indexOf(0xe0); at >= 0 && at + 2 < bytes.length; at = bytes.indexOf(0xe0, at + 1)) {
        return bytes[at + 1]! | (bytes[at + 2]! << 7);
      }
      return undefined;
    };
    const digitalPort0 = (bytes: Buffer) => {
      const at = bytes.lastIndexOf(0x90);
      return at >= 0 && at + 2 < bytes.length ? bytes[at + 1]! | (bytes[at + 2]! << 7) : undefined;
    };
    const received = await talk(
      uno.portPath,
      (port) => {
        // Once the firmware has announced itself (its name ends with the sysex end byte, 0xF7),
        // not after a guessed delay: pin 2 as input, report port 0 and analog 0.
        const onData = (chunk: Buffer) => {
          if (!chunk.includes(0xf7)) return;
          port.off('data', onData);
          port.write(Buffer.from([0xf4, 2, 0, 0xd0, 1, 0xc0, 1]));
        };
        port.on('data', onData);
      },
      (bytes) => analogReport(bytes) !== undefined && digitalPort0(bytes) !== undefined,
    );
    expect(analogReport(received)).toBeGreaterThanOrEqual(505);
    expect(analogReport(received)).toBeLessThanOrEqual(518);
    expect(digitalPort0(received)! & 0b100).toBe(0b100);
  });

  it('keeps its flash across a restart, like a real board unplugged and plugged back', async () => {
    const blink = await buildFirmware({
      sketchPath: BLINK_SKETCH,
      board: 'uno',
      outDir: join(scratch, 'blink'),
    });
    const stateDir = join(scratch, 'uno-restart');
    const first = await start('uno', stateDir);
    await avrdude([
      '-c',
      'arduino',
      '-p',
      'm328p',
      '-b',
      '115200',
      '-P',
      first.portPath,
      '-U',
      `flash:w:${blink.hexPath}:i`,
    ]);
    await first.waitForPin('D13', 1, 5000);
    await first.waitForPin('D13', 0, 2000);
    // SIGTERM, as a shutdown would send: the harness saves the flash and removes its pid file.
    process.kill(first.pid, 'SIGTERM');
    await stop(first);
    expect(await findRunningBench(stateDir)).toBeUndefined();

    const second = await start('uno', stateDir);
    // Power-on runs the application straight away: no host touches the port.
    let changes = 0;
    second.onPinChange('LED', () => changes++);
    await second.waitForPin('D13', 1, 3000);
    await second.waitForPin('D13', 0, 2000);
    await second.waitForPin('D13', 1, 2000);
    expect(changes).toBeGreaterThanOrEqual(2);
  });

  it('resets into the bootloader on command, which flashes the LED before the sketch runs again', async () => {
    const blink = await buildFirmware({
      sketchPath: BLINK_SKETCH,
      board: 'uno',
      outDir: join(scratch, 'blink'),
    });
    const uno = await start('uno', join(scratch, 'uno-reset'), blink.hexPath);
    await uno.waitForPin('LED', 1, 3000);
    const changes: number[] = [];
    // Six changes come whatever happens (the sketch blinks on); what counts is how soon, in the
    // board's own time (a loaded machine runs the simulation slower than the wall clock).
    let resetAt = Number.POSITIVE_INFINITY;
    let sawSix: () => void = () => undefined;
    const sixChanges = new Promise<void>((resolve) => (sawSix = resolve));
    const check = () => changes.filter((at) => at >= resetAt).length >= 6 && sawSix();
    uno.onPinChange('LED', (_level, simulatedMs) => {
      changes.push(simulatedMs);
      check();
    });
    resetAt = await uno.reset();
    check();
    await sixChanges;
    // optiboot's three flashes (six changes) in well under the blink sketch's half second.
    const early = changes.filter((at) => at >= resetAt && at - resetAt < 700);
    expect(
      early.length,
      `changes at ${changes.join(', ')} ms, reset at ${resetAt} ms`,
    ).toBeGreaterThanOrEqual(6);
  });

  it('does not answer avrdude at the wrong baud rate, as a real Uno with optiboot does not', async () => {
    const uno = await start('uno', join(scratch, 'uno-wrong-baud'));
    await expect(
      avrdude(['-c', 'arduino', '-p', 'm328p', '-b', '57600', '-x', 'attempts=1', '-P', uno.portPath]),
    ).rejects.toThrow(/not in sync|not responding/);
  });

  it('refuses a second board in the same state directory', async () => {
    const stateDir = join(scratch, 'uno-twice');
    const uno = await start('uno', stateDir);
    await expect(start('uno', stateDir)).rejects.toThrow(new RegExp(`already runs in .*pid ${uno.pid}`));
  });
});

describe('a simulated Nano with the old ATmegaBOOT bootloader', () => {
  it('takes a sketch from avrdude at 57600 baud and runs it', async () => {
    const blink = await buildFirmware({
      sketchPath: BLINK_SKETCH,
      board: 'nano',
      outDir: join(scratch, 'blink-nano'),
    });
    const nano = await start('nano:old-bootloader', join(scratch, 'nano-old'));
    const flashing = await avrdude([
      '-c',
      'arduino',
      '-p',
      'm328p',
      '-b',
      '57600',
      '-P',
      nano.portPath,
      '-U',
      `flash:w:${blink.hexPath}:i`,
    ]);
    expect(flashing.output).toMatch(/bytes of flash verified/);
    await nano.waitForPin('D13', 1, 5000);
    await nano.waitForPin('D13', 0, 2000);
  });
});

describe('a simulated Mega 2560 with the STK500v2 bootloader', () => {
  it('takes a sketch from avrdude -c wiring, verifies it, and runs it', async () => {
    const blink = await buildFirmware({
      sketchPath: BLINK_SKETCH,
      board: 'mega2560',
      outDir: join(scratch, 'blink-mega'),
    });
    const mega = await start('mega2560', join(scratch, 'mega'));
    const flashing = await avrdude([
      '-c',
      'wiring',
      '-p',
      'm2560',
      '-b',
      '115200',
      '-P',
      mega.portPath,
      '-D',
      '-U',
      `flash:w:${blink.hexPath}:i`,
    ]);
    expect(flashing.output).toMatch(/device signature = 0x1e9801/);
    expect(flashing.output).toMatch(/bytes of flash verified/);
    await mega.waitForPin('D13', 1, 5000);
    await mega.waitForPin('D13', 0, 2000);
  });
});
