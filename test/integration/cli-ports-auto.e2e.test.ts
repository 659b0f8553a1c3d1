import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SerialPortInfo } from '../../mcu/ports/serial-ports.ts';
import { isAlive, killLeftoverBench } from '../support/bench-process.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';

/** simavr runs the board in real time: on a loaded two-core machine give each step room. */
const SLOW = 180_000;

/**
 * Issue 19 items 3 and 7: bench boards are ports like plugged-in ones. A simulated Nano with the
 * old bootloader (ATmegaBOOT at 57600 baud) is listed by `ports`, found by `--port auto`, flashed
 * and probed, and `bench stop --all` stops it, all through real CLI processes.
 */
describe('bench boards as ports: ports, --port auto and bench stop --all', () => {
  let workDir: string;
  let cli: CliRunner;
  let portPath: string;
  let stateDir: string;
  let pid: number | undefined;

  beforeAll(() => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-ports-'));
    // Its own cache, so its bench directory holds only this test's boards.
    cli = cliRunner({ cwd: workDir, env: { BOARDFLEET_CACHE_DIR: join(workDir, 'cache') }, timeoutMs: SLOW });
    stateDir = join(workDir, 'cache', 'bench', 'nano-old-bootloader');
    portPath = join(stateDir, 'tty');
  });

  afterAll(async () => {
    await killLeftoverBench(pid, SLOW);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'says so when no simulated board runs, then lists a started one with its board id',
    async () => {
      expect((await cli.ok('bench', 'stop', '--all')).stdout).toBe('No simulated boards running\n');
      const none = JSON.parse((await cli.ok('ports', '--json')).stdout) as SerialPortInfo[];
      expect(none.filter((port) => port.bench)).toEqual([]);

      const started = await cli.ok('bench', 'start', 'nano:old-bootloader');
      expect(started.stdout.split('\n')[0]).toBe(portPath);

      const ports = JSON.parse((await cli.ok('ports', '--json')).stdout) as SerialPortInfo[];
      const bench = ports.find((port) => port.path === portPath);
      expect(bench).toEqual({
        path: portPath,
        bench: { board: 'nano:old-bootloader', pid: expect.any(Number), stateDir },
      });
      pid = bench!.bench!.pid;
      const { stdout: table } = await cli.ok('ports');
      expect(table).toMatch(new RegExp(`^${portPath} +- +nano:old-bootloader \\(simulated\\) +-$`, 'm'));
    },
    SLOW,
  );

  it(
    'finds the simulated old-bootloader Nano for --board nano and says so, and flashes it through its bootloader at 57600 baud',
    async () => {
      // --board nano talks optiboot's 115200 baud first; ATmegaBOOT answers at 57600, as on an old Nano.
      const asNano = await cli.ok('flash', 'firmata', '--board', 'nano', '--port', 'auto');
      expect(asNano.stderr).toContain(
        `No nano plugged in; using the simulated nano:old-bootloader at ${portPath}\n`,
      );
      expect(asNano.stderr).toContain(
        'No answer at 115200 baud; Arduino Nano (old bootloader) answered at 57600 baud. Next time flash it with --board nano:old-bootloader.\n',
      );
      expect(asNano.stdout).toMatch(
        new RegExp(
          `^Flashed [\\d.]+ KiB to Arduino Nano \\(old bootloader\\) on ${portPath} in .*, verified\\n$`,
        ),
      );

      const flashed = await cli.ok('flash', 'firmata', '--board', 'nano:old-bootloader', '--port', 'auto');
      expect(flashed.stderr).toContain(
        `No nano:old-bootloader plugged in; using the simulated nano:old-bootloader at ${portPath}\n`,
      );
      expect(flashed.stdout).toMatch(
        new RegExp(
          `^Flashed [\\d.]+ KiB to Arduino Nano \\(old bootloader\\) on ${portPath} in .*, verified\\n$`,
        ),
      );
    },
    3 * SLOW,
  );

  it(
    'probes the flashed Nano through --port auto --board nano',
    async () => {
      const probed = await cli.ok('probe', '--port', 'auto', '--board', 'nano');
      expect(probed.stderr).toBe(
        `No nano plugged in; using the simulated nano:old-bootloader at ${portPath}\n`,
      );
      expect(probed.stdout).toContain(`Firmata board on ${portPath}\n`);
      expect(probed.stdout).toContain('  self-test: passed on pin 13 (wrote 1 read 1, wrote 0 read 0)\n');
    },
    SLOW,
  );

  it(
    'stops every simulated board with bench stop --all, a line for each',
    async () => {
      const { stdout } = await cli.ok('bench', 'stop', '--all');
      expect(stdout).toBe(`Stopped nano:old-bootloader (pid ${pid}) in ${stateDir}\n`);
      expect(isAlive(pid!)).toBe(false);
      expect((await cli.ok('bench', 'stop', '--all')).stdout).toBe('No simulated boards running\n');
      expect((await cli.failing('bench', 'stop', 'uno', '--all')).stderr).toBe(
        'boardfleet: --all stops every board: name no board and no --state-dir\n',
      );
    },
    SLOW,
  );
});
