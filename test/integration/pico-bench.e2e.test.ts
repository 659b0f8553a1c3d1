import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUf2Firmware } from '../../builder/mcu/rp2040/build-uf2-firmware.ts';
import {
  connectSimulatedBoard,
  type RunningBench,
  type SimulatedBoard,
} from '../../mcu/simulator/simulated-board.ts';
import { stopProcess } from '../support/agent-process.ts';
import { isAlive, killLeftoverBench } from '../support/bench-process.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { assertJohnnyFiveSerialportBuilt } from '../support/johnny-five.ts';

/** rp2040js runs the Pico in real time: on a loaded two-core machine give each step room. */
const SLOW = 120_000;
const PIN_MS = 20_000;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * A johnny-five script as a maker would write it for a Pico on its UART0 port: blink the LED on
 * GP25, print A0 (GP26). Run from the checkout, where johnny-five is installed.
 */
const JOHNNY_FIVE_SCRIPT = `
import five from 'johnny-five';
const board = new five.Board({ port: process.argv[1], repl: false });
board.on('ready', () => {
  new five.Led(25).blink(250);
  new five.Sensor({ pin: 'A0', freq: 50 }).on('data', function () { console.log('A0 ' + this.value); });
});`;

/** Resolves with the first line of the child's stdout that `pattern` matches; rejects if it exits first. */
function lineMatching(child: ChildProcessWithoutNullStreams, pattern: RegExp): Promise<RegExpExecArray> {
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      for (const line of output.split('\n')) {
        const match = pattern.exec(line);
        if (!match) continue;
        child.stdout.off('data', onData);
        child.off('exit', onExit);
        output = '';
        resolve(match);
        return;
      }
    };
    const onExit = (code: number | null) =>
      reject(new Error(`exited ${code} before printing ${pattern}; it printed:\n${output}`));
    child.stdout.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * Issue 21, "Tests and figures": our Firmata built for the Pico → loaded into a simulated Pico
 * (`boardfleet bench start pico`) → probed by `boardfleet probe` (firmware name, pins, the LED
 * toggle seen on the emulator's GPIO) → driven by johnny-five.
 */
describe('build, bench, probe and script a simulated Pico', () => {
  let workDir: string;
  let cli: CliRunner;
  let uf2Path: string;
  let bench: RunningBench;
  let pico: SimulatedBoard;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-pico-bench-'));
    // Its own cache, so its bench directory (what `bench list` reads) holds only this test's board.
    cli = cliRunner({ cwd: workDir, env: { BOARDFLEET_CACHE_DIR: join(workDir, 'cache') }, timeoutMs: SLOW });
    ({ uf2Path } = await buildUf2Firmware({
      recipe: 'firmata',
      board: 'pico',
      outDir: join(workDir, 'build'),
    }));
  }, SLOW);

  afterAll(async () => {
    pico?.disconnect();
    await killLeftoverBench(bench?.pid, SLOW);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'starts a simulated Pico running the UF2 on a serial port and lists it',
    async () => {
      const { stdout } = await cli.ok('bench', 'start', 'pico', '--firmware', uf2Path);
      const stateDir = join(workDir, 'cache', 'bench', 'pico');
      const portPath = join(stateDir, 'tty');
      expect(stdout.split('\n')[0]).toBe(portPath);
      expect(stdout).toMatch(/^ {2}Raspberry Pi Pico \(pid \d+\); opening the port resets it/m);
      expect(existsSync(portPath)).toBe(true);

      const listed = JSON.parse((await cli.ok('bench', 'list', '--json')).stdout) as RunningBench[];
      expect(listed).toEqual([{ board: 'pico', portPath, pid: expect.any(Number), stateDir }]);
      bench = listed[0]!;
      pico = await connectSimulatedBoard(stateDir, 'pico');
    },
    SLOW,
  );

  it(
    'probes it over Firmata: our firmware, its pins, and the LED self-test seen on GP25',
    async () => {
      const ledLevels: number[] = [];
      const unsubscribe = pico.onPinChange('LED', (level) => ledLevels.push(level));
      const { stdout } = await cli.ok('probe', '--port', bench.portPath, '--led-pin', '25');
      unsubscribe();
      expect(stdout).toContain(`Firmata board on ${bench.portPath}\n`);
      expect(stdout).toMatch(
        /^ {2}firmware: {2}BoardfleetFirmata \d+\.\d+ \(protocol 2\.\d\), ready after \d+ ms$/m,
      );
      expect(stdout).toMatch(/^ {2}pins: {6}\d+ \(3 analog\); /m);
      expect(stdout).toContain('  self-test: passed on pin 25 (wrote 1 read 1, wrote 0 read 0)\n');
      // The self-test's writes, as the emulator's GPIO saw them.
      expect(ledLevels).toEqual([1, 0]);
    },
    SLOW,
  );

  it(
    'is driven by a johnny-five script: the LED on GP25 blinks and A0 reads the voltage on GP26',
    async () => {
      assertJohnnyFiveSerialportBuilt();
      await pico.setAnalogMillivolts('A0', 1650);
      const child = spawn(
        process.execPath,
        ['--input-type=module', '-e', JOHNNY_FIVE_SCRIPT, bench.portPath],
        { cwd: ROOT },
      );
      try {
        const half = await lineMatching(child, /^A0 (\d+)$/);
        // 12 bits against 3.3 V.
        expect(Math.abs(Number(half[1]) - 2048)).toBeLessThanOrEqual(16);
        const changedAt: number[] = [];
        const unsubscribe = pico.onPinChange('LED', () => changedAt.push(performance.now()));
        for (const level of [1, 0, 1, 0] as const) await pico.waitForPin('LED', level, PIN_MS);
        unsubscribe();
        const halfPeriods = changedAt.slice(1).map((at, i) => Math.round(at - changedAt[i]!));
        console.log(`GP25 half-periods, as seen by the host: ${halfPeriods.join(', ')} ms`);
        const median = [...halfPeriods].sort((a, b) => a - b)[Math.floor(halfPeriods.length / 2)]!;
        expect(median).toBeGreaterThan(150);
        expect(median).toBeLessThan(600);

        await pico.setAnalogMillivolts('A0', 3300);
        await lineMatching(child, /^A0 (409[0-5])$/);
      } finally {
        await stopProcess(child, 'SIGTERM');
      }
    },
    SLOW,
  );

  it(
    'stops it and lists none',
    async () => {
      pico.disconnect();
      const { stdout } = await cli.ok('bench', 'stop', 'pico');
      expect(stdout).toBe(`Stopped pico (pid ${bench.pid}) in ${bench.stateDir}\n`);
      expect(isAlive(bench.pid)).toBe(false);
      expect(existsSync(bench.portPath)).toBe(false);
      expect((await cli.ok('bench', 'list')).stdout).toBe('(none)\n');
    },
    SLOW,
  );
});
