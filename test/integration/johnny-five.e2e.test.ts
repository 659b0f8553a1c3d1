import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { flashBoard } from '../../mcu/flasher/flash-board.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import { CLI, stopProcess } from '../support/agent-process.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { assertJohnnyFiveSerialportBuilt } from '../support/johnny-five.ts';

/** simavr runs the boards in real time: on a loaded two-core machine give each step room. */
const SLOW = 120_000;
const BLINK_EXAMPLE = fileURLToPath(new URL('../../mcu/johnny-five/examples/blink.js', import.meta.url));

/** Resolves with everything the child printed once it matches `pattern`; rejects if the child exits first. */
function outputUntil(child: ChildProcessWithoutNullStreams, pattern: RegExp): Promise<string> {
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (!pattern.test(output)) return;
      child.stdout.off('data', onData);
      child.stderr.off('data', onData);
      child.off('exit', onExit);
      resolve(output);
    };
    const onExit = (code: number | null) =>
      reject(new Error(`exited ${code} before printing ${pattern}; it printed:\n${output}`));
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', onExit);
  });
}

/**
 * Issue 19 item 5: johnny-five out of the box. Its README's blink example, unchanged but for the
 * port, and `boardfleet repl`, both against a simulated Uno running our Firmata firmware.
 */
describe('johnny-five on a simulated Uno running our Firmata', () => {
  const workDir = mkdtempSync(join(tmpdir(), 'boardfleet-johnny-five-'));
  const cli = cliRunner({ cwd: workDir, timeoutMs: SLOW });
  let firmata: SimulatedBoard;
  let blank: SimulatedBoard;

  beforeAll(async () => {
    const [{ hexPath }, firmataBoard, blankBoard] = await Promise.all([
      buildFirmware({ recipe: 'firmata', board: 'uno', outDir: join(workDir, 'build') }),
      startSimulatedBoard({ board: 'uno', stateDir: join(workDir, 'firmata-uno') }),
      startSimulatedBoard({ board: 'uno', stateDir: join(workDir, 'blank-uno') }),
    ]);
    firmata = firmataBoard;
    blank = blankBoard;
    await flashBoard({ board: 'uno', hexPath, portPath: firmata.portPath });
  }, SLOW);

  afterAll(async () => {
    await Promise.all([firmata?.stop(), blank?.stop()]);
    rmSync(workDir, { recursive: true, force: true });
  });

  it(
    "runs johnny-five's README blink example as written: `new Board({ port })` blinks D13 every half second",
    async () => {
      assertJohnnyFiveSerialportBuilt();
      // When each change reached us: the host times the blink, and a loaded machine slows the board's clock.
      const changedAt: number[] = [];
      // stdin stays open: the example's Board starts johnny-five's REPL on it, as in a terminal.
      const child = spawn(process.execPath, [BLINK_EXAMPLE, firmata.portPath], { cwd: workDir });
      try {
        // Printed once the Board is ready: from then on only the host drives D13 (optiboot flickers it before).
        await outputUntil(child, /Repl\s+Initialized/);
        const unsubscribe = firmata.onPinChange('D13', () => changedAt.push(performance.now()));
        for (const level of [1, 0, 1, 0, 1] as const) await firmata.waitForPin('D13', level, 10_000);
        unsubscribe();
      } finally {
        await stopProcess(child, 'SIGTERM');
      }
      const halfPeriods = changedAt.slice(1).map((at, i) => Math.round(at - changedAt[i]!));
      console.log(`D13 half-periods, as seen by the host: ${halfPeriods.join(', ')} ms`);
      expect(changedAt.length).toBeGreaterThanOrEqual(5);
      const median = [...halfPeriods].sort((a, b) => a - b)[Math.floor(halfPeriods.length / 2)]!;
      expect(median).toBeGreaterThan(300);
      expect(median).toBeLessThan(1000);
    },
    SLOW,
  );

  it(
    'opens a REPL in a terminal with `boardfleet repl`: five.Led(13).on() lights D13, .exit exits 0',
    async () => {
      // `script` gives the CLI a terminal of its own, as a person's shell would.
      const child = spawn(
        'script',
        ['-qefc', `${process.execPath} ${CLI} repl --port ${firmata.portPath}`, '/dev/null'],
        {
          cwd: workDir,
        },
      );
      try {
        const banner = await outputUntil(child, /Quit: \.exit or Ctrl-D[\s\S]*>> /);
        expect(banner).toContain(`Connected to BoardfleetFirmata`);
        expect(banner).toContain(`on ${firmata.portPath}. In scope: board, five (johnny-five).`);
        // Opening the port reset the board; the firmware starts with the LED off.
        await firmata.waitForPin('D13', 0, 10_000);
        child.stdin.write('new five.Led(13).on()\n');
        await firmata.waitForPin('D13', 1, 10_000);
        const exited = once(child, 'exit');
        child.stdin.write('.exit\n');
        const [code] = (await exited) as [number | null];
        expect(code).toBe(0);
      } finally {
        await stopProcess(child, 'SIGKILL');
      }
    },
    SLOW,
  );

  it(
    'names the port and the flash command when the board does not answer Firmata',
    async () => {
      const { stderr } = await cli.failing(
        'repl',
        '--port',
        blank.portPath,
        '--board',
        'uno',
        '--timeout',
        '3000',
      );
      expect(stderr.trimEnd().split('\n').at(-1)).toBe(
        `boardfleet: No Firmata answer from ${blank.portPath} within 3 s: is Firmata on it? ` +
          `Flash it with: boardfleet flash firmata --board uno --port ${blank.portPath}`,
      );
    },
    SLOW,
  );
});
