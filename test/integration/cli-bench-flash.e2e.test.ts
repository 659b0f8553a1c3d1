import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningBench } from '../../mcu/simulator/simulated-board.ts';
import { isAlive, killLeftoverBench } from '../support/bench-process.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';

/** simavr runs the board in real time: on a loaded two-core machine give each step room. */
const SLOW = 120_000;

/**
 * Issue 15 item 11, the maker path of the README without hardware, all through real CLI processes:
 * build our Firmata firmware, start a simulated Uno (simavr running the real optiboot) on a serial
 * port, flash it with write and read-back verify, probe it over Firmata, and stop it.
 */
describe('build, bench, flash and probe on a simulated Uno', () => {
  let workDir: string;
  let cli: CliRunner;
  let hexPath: string;
  let bench: RunningBench;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-bench-'));
    // Its own cache, so its bench directory (what `bench list` reads) holds only this test's board.
    cli = cliRunner({ cwd: workDir, env: { BOARDFLEET_CACHE_DIR: join(workDir, 'cache') }, timeoutMs: SLOW });
  });

  afterAll(async () => {
    await killLeftoverBench(bench?.pid, SLOW);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'builds the Firmata firmware into .hex and .elf with a size report',
    async () => {
      const { stdout } = await cli.ok('build', 'firmata', '--board', 'uno');
      const outDir = join(workDir, 'build', 'firmata', 'uno');
      hexPath = join(outDir, 'firmata.hex');
      expect(stdout).toMatch(new RegExp(`^Built firmata for uno in [\\d.]+ s, into ${outDir}\\n`));
      expect(stdout).toContain(`  hex:  ${hexPath}\n`);
      expect(stdout).toContain(`  elf:  ${join(outDir, 'firmata.elf')}\n`);
      expect(stdout).toMatch(/^ {2}sha256 \(hex\): [0-9a-f]{64}$/m);
      expect(stdout).toMatch(
        /^ {2}size: flash \d+ of 32256 bytes \([\d.]+%\), RAM \d+ of 2048 bytes \([\d.]+%\)$/m,
      );
      expect(existsSync(hexPath) && existsSync(join(outDir, 'firmata.elf'))).toBe(true);
    },
    SLOW,
  );

  it(
    'starts a simulated Uno on a serial port and lists it',
    async () => {
      const { stdout } = await cli.ok('bench', 'start', 'uno');
      const stateDir = join(workDir, 'cache', 'bench', 'uno');
      const portPath = join(stateDir, 'tty');
      expect(stdout.split('\n')[0]).toBe(portPath);
      expect(stdout).toMatch(/^ {2}Arduino Uno \(pid \d+\); opening the port resets it into its bootloader/m);
      expect(existsSync(portPath)).toBe(true);

      const listed = JSON.parse((await cli.ok('bench', 'list', '--json')).stdout) as RunningBench[];
      expect(listed).toEqual([{ board: 'uno', portPath, pid: expect.any(Number), stateDir }]);
      bench = listed[0]!;
      expect(stdout).toContain(`(pid ${bench.pid})`);
      expect(isAlive(bench.pid)).toBe(true);
      const { stdout: table } = await cli.ok('bench', 'list');
      expect(table).toBe(
        `BOARD  PORT${' '.repeat(portPath.length - 4)}  PID${' '.repeat(String(bench.pid).length - 3)}  STATE DIR\n` +
          `uno    ${portPath}  ${bench.pid}  ${stateDir}\n`,
      );
    },
    SLOW,
  );

  it(
    'finds no Firmata on the blank board, flashes the firmware with write and verify, then probes Firmata',
    async () => {
      // Only the bootloader runs on a fresh board: the probe must say so, not pass.
      const blank = await cli.failing('probe', '--port', bench.portPath, '--timeout', '3000');
      expect(blank.stdout).toMatch(/^Not Firmata: /);

      const flashed = await cli.ok('flash', hexPath, '--board', 'uno', '--port', bench.portPath);
      expect(flashed.stderr).toContain(
        `Resetting Arduino Uno on ${bench.portPath} into its bootloader (stk500v1)…\n`,
      );
      expect(flashed.stderr).toMatch(/^Writing: done in [\d.]+ s/m);
      expect(flashed.stderr).toMatch(/^Verifying: done in [\d.]+ s/m);
      expect(flashed.stdout).toMatch(
        new RegExp(
          `^Flashed [\\d.]+ KiB to Arduino Uno on ${bench.portPath} in [\\d.]+ s \\([\\d.]+ KiB/s\\), verified\\n$`,
        ),
      );

      const { stdout } = await cli.ok('probe', '--port', bench.portPath);
      expect(stdout).toContain(`Firmata board on ${bench.portPath}\n`);
      expect(stdout).toMatch(
        /^ {2}firmware: {2}BoardfleetFirmata \d+\.\d+ \(protocol 2\.\d\), ready after \d+ ms$/m,
      );
      expect(stdout).toMatch(/^ {2}pins: {6}20 \(6 analog\); .*OUTPUT 18/m);
      expect(stdout).toContain('  self-test: passed on pin 13 (wrote 1 read 1, wrote 0 read 0)\n');
    },
    3 * SLOW,
  );

  it(
    'stops the board, lists none, and refuses to stop it twice',
    async () => {
      const { stdout } = await cli.ok('bench', 'stop', 'uno');
      expect(stdout).toBe(`Stopped uno (pid ${bench.pid}) in ${bench.stateDir}\n`);
      expect(isAlive(bench.pid)).toBe(false);
      expect((await cli.ok('bench', 'list')).stdout).toBe('(none)\n');
      expect(JSON.parse((await cli.ok('bench', 'list', '--json')).stdout)).toEqual([]);

      const again = await cli.failing('bench', 'stop', 'uno');
      expect(again.stderr).toBe(`boardfleet: No simulated board runs in ${bench.stateDir}\n`);
    },
    SLOW,
  );
});
