import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import type { FlashResult } from '../../mcu/flasher/flash-board.ts';
import type { StationOutcome } from '../../mcu/flasher/flash-station.ts';
import { startSimulatedBoard, type SimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';

/** simavr runs each board in real time: on a loaded two-core machine give each step room. */
const SLOW = 180_000;

/**
 * `boardfleet flash` through the real CLI process against bench boards (simavr running the real
 * optiboot and STK500v2 bootloaders): single-port JSON, bad input, `--all` over three Unos with
 * one held by another program, a page the board stores wrong, and a Mega flashed and probed.
 */
describe('boardfleet flash on bench boards', () => {
  let workDir: string;
  let cli: CliRunner;
  let hexPath: string;
  const unos: SimulatedBoard[] = [];
  let mega: SimulatedBoard;

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-flash-'));
    const cacheDir = join(workDir, 'cache');
    // `flash --all` finds bench boards under the CLI's cache: this test's boards only.
    cli = cliRunner({ cwd: workDir, env: { BOARDFLEET_CACHE_DIR: cacheDir }, timeoutMs: SLOW });
    hexPath = (await buildFirmware({ recipe: 'firmata', board: 'uno', outDir: join(workDir, 'firmata-uno') }))
      .hexPath;
    const started = await Promise.all([
      ...['uno-a', 'uno-b', 'uno-c'].map((name) =>
        startSimulatedBoard({ board: 'uno', stateDir: join(cacheDir, 'bench', name) }),
      ),
      startSimulatedBoard({ board: 'mega2560', stateDir: join(cacheDir, 'bench', 'mega2560') }),
    ]);
    mega = started.pop()!;
    unos.push(...started);
  }, SLOW);

  afterAll(async () => {
    await Promise.all([...unos, mega].filter(Boolean).map((board) => board.stop()));
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'prints the flash result of one port as JSON',
    async () => {
      const { stdout, stderr } = await cli.ok(
        'flash',
        hexPath,
        '--board',
        'uno',
        '--port',
        unos[0]!.portPath,
        '--json',
      );
      expect(stderr).toBe('');
      const result = JSON.parse(stdout) as FlashResult;
      expect(result).toMatchObject({
        board: 'uno',
        portPath: unos[0]!.portPath,
        protocol: 'stk500v1',
        mcu: 'atmega328p',
        signature: '1e 95 0f',
        verified: true,
      });
      expect(result.bytesVerified).toBe(result.bytesWritten);
      expect(result.pages).toBe(result.bytesWritten / 128);
    },
    SLOW,
  );

  it.each([
    {
      name: 'a .hex that is not Intel HEX',
      args: (bad: string) => [bad, '--board', 'uno', '--port', '/dev/boardfleet-none'],
      error: (bad: string) =>
        `boardfleet: ${bad} line 1: does not start with ":"; rebuild the firmware or fetch the file again\n`,
    },
    {
      name: 'an unknown board',
      args: (bad: string) => [bad, '--board', 'unobtainium', '--port', '/dev/boardfleet-none'],
      error: () =>
        expect.stringMatching(/^boardfleet: Unknown board "unobtainium"\. Known boards: .*uno.*\n$/),
    },
    {
      name: '--all with --port',
      args: (bad: string) => [bad, '--board', 'uno', '--all', '--port', '/dev/boardfleet-none'],
      error: () => 'boardfleet: --all flashes every port that can be uno; leave out --port\n',
    },
    {
      name: '--all when no port can be the board',
      args: (bad: string) => [bad, '--board', 'nano', '--all'],
      error: () =>
        expect.stringMatching(
          /^boardfleet: No Arduino Nano to flash: no serial port has one of its USB ids and no bench board runs as nano\. Plugged in: .*\/bench\/mega2560\/tty \(bench mega2560\).*\.\n$/,
        ),
    },
  ])('refuses $name in one line, before opening any port', async ({ args, error }) => {
    const bad = join(workDir, 'not-intel.hex');
    writeFileSync(bad, 'hello\n');
    const result = await cli.failing('flash', ...args(bad));
    expect(result).toEqual({ code: 1, stdout: '', stderr: error(bad) });
  });

  it(
    'flashes every Uno at once with --all; the one another program holds fails alone, with the reason',
    async () => {
      const [free1, free2, held] = unos.map((board) => board.portPath) as [string, string, string];
      const holder = new SerialPort({ path: held, baudRate: 115200, lock: true, autoOpen: false });
      holder.on('error', () => undefined);
      await new Promise<void>((resolve, reject) =>
        holder.open((error) => (error ? reject(error) : resolve())),
      );
      try {
        const result = await cli.failing('flash', hexPath, '--board', 'uno', '--all');
        expect(result.code).toBe(1);
        expect(result.stderr).toContain(`Flashing Arduino Uno on 3 ports: ${free1}, ${free2}, ${held}\n`);
        expect(result.stderr).toContain(`${free1} Verifying: done in`);
        expect(result.stdout).toMatch(
          new RegExp(
            `^✓ ${free1} uno [\\d.]+ KiB in [\\d.]+ s, verified\\n` +
              `✓ ${free2} uno [\\d.]+ KiB in [\\d.]+ s, verified\\n` +
              `✗ ${held} uno: ${held} is in use by another program \\(a serial monitor, the Arduino IDE, a running boardfleet agent or flash\\); close it and try again\\n$`,
          ),
        );
      } finally {
        await new Promise<void>((resolve) => holder.close(() => resolve()));
      }
    },
    SLOW,
  );

  it(
    'reports a page the board stored wrong as that port’s verify failure, naming the page, in JSON with --all',
    async () => {
      const [first, second, third] = unos as [SimulatedBoard, SimulatedBoard, SimulatedBoard];
      await second.corruptNextPageWrite(0x0100);
      const { code, stdout } = await cli.failing('flash', hexPath, '--board', 'uno', '--all', '--json');
      expect(code).toBe(1);
      const outcomes = JSON.parse(stdout) as StationOutcome[];
      const verified = (board: SimulatedBoard) => ({
        port: board.portPath,
        board: 'uno',
        verified: true,
        bytes: expect.any(Number),
        seconds: expect.any(Number),
        result: expect.objectContaining({ portPath: board.portPath, verified: true }),
      });
      expect(outcomes).toEqual([
        verified(first),
        {
          port: second.portPath,
          board: 'uno',
          verified: false,
          code: 'verify-failed',
          error: expect.stringMatching(
            new RegExp(
              `^Verify failed on ${second.portPath}: the page at 0x0100 \\(page 3 of \\d+\\) reads 0x`,
            ),
          ),
        },
        verified(third),
      ]);
    },
    SLOW,
  );

  it(
    'says in one line which page failed read-back when one port is flashed',
    async () => {
      await unos[0]!.corruptNextPageWrite(0x0180);
      const { stdout, stderr } = await cli.failing(
        'flash',
        hexPath,
        '--board',
        'uno',
        '--port',
        unos[0]!.portPath,
      );
      expect(stdout).toBe('');
      expect(stderr.split('\n').filter((line) => line.startsWith('boardfleet:'))).toEqual([
        expect.stringMatching(
          new RegExp(
            `^boardfleet: Verify failed on ${unos[0]!.portPath}: the page at 0x0180 \\(page 4 of \\d+\\) reads 0x[0-9A-F]{2} at 0x0180, expected 0x[0-9A-F]{2}\\. `,
          ),
        ),
      ]);
    },
    SLOW,
  );

  it(
    'builds Firmata for the Mega, flashes it over STK500v2 and probes it',
    async () => {
      const flashed = await cli.ok('flash', 'firmata', '--board', 'mega2560', '--port', mega.portPath);
      expect(flashed.stderr).toContain('Building firmata for mega2560…\n');
      expect(flashed.stderr).toContain(
        `Resetting Arduino Mega 2560 on ${mega.portPath} into its bootloader (stk500v2)…\n`,
      );
      expect(flashed.stdout).toMatch(
        new RegExp(
          `^Flashed [\\d.]+ KiB to Arduino Mega 2560 on ${mega.portPath} in [\\d.]+ s \\([\\d.]+ (?:KiB|B)/s\\), verified\\n$`,
        ),
      );
      const { stdout } = await cli.ok('probe', '--port', mega.portPath);
      expect(stdout).toContain(`Firmata board on ${mega.portPath}\n`);
      expect(stdout).toMatch(
        /^ {2}firmware: {2}BoardfleetFirmata \d+\.\d+ \(protocol 2\.\d\), ready after \d+ ms$/m,
      );
      expect(stdout).toContain('  self-test: passed on pin 13 (wrote 1 read 1, wrote 0 read 0)\n');
    },
    3 * SLOW,
  );
});
