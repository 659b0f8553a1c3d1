import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import { CLI } from '../support/agent-process.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { eventually } from '../support/test-server.ts';

/** simavr runs the board in real time and the CLI starts slowly on a loaded two-core machine. */
const SLOW = 180_000;

/**
 * Talks at the IDE monitor's default 9600 baud: a line on start, a tick every 200 ms, and each
 * line it receives answered with its bytes in hex, so the test sees exactly what Enter sent.
 */
const ECHO_SKETCH = `
uint8_t received[48];
uint8_t receivedLength = 0;
unsigned long ticks = 0;
unsigned long lastTick = 0;

void setup() {
  Serial.begin(9600);
  Serial.println("echo ready");
}

void loop() {
  while (Serial.available() > 0) {
    uint8_t value = Serial.read();
    if (receivedLength < sizeof received) received[receivedLength++] = value;
    if (value == '\\n') {
      Serial.print("rx");
      for (uint8_t i = 0; i < receivedLength; i++) {
        Serial.print(received[i] < 16 ? " 0" : " ");
        Serial.print(received[i], HEX);
      }
      Serial.println();
      receivedLength = 0;
    }
  }
  if (millis() - lastTick >= 200) {
    lastTick = millis();
    Serial.print("tick ");
    Serial.println(ticks++);
  }
}
`;

interface MonitorProcess {
  child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
  /** Resolves once stdout (from `from` on) matches. */
  printed(pattern: RegExp, from?: number): Promise<void>;
  /** Resolves once stderr holds `text`. */
  said(text: string): Promise<void>;
}

/**
 * Issue 19 item 2: `boardfleet monitor` through the real CLI against a simulated Uno running a
 * sketch our builder built, with stdin and stdout as pipes.
 */
describe('boardfleet monitor on a simulated Uno', () => {
  let workDir: string;
  let stateDir: string;
  let hexPath: string;
  let uno: SimulatedBoard | undefined;
  const monitors: MonitorProcess[] = [];

  const startMonitor = (...args: string[]): MonitorProcess => {
    const child = spawn(process.execPath, [CLI, 'monitor', ...args], {
      cwd: workDir,
      // Its own cache, so `--port auto` could only find this test's board.
      env: { ...process.env, BOARDFLEET_CACHE_DIR: join(workDir, 'cache') },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // A monitor that quit leaves a closed pipe: writing to it is not the test's failure.
    child.stdin.on('error', () => undefined);
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    });
    const seen = (what: string, check: () => boolean) =>
      eventually(`${what}\n--- stdout\n${stdout.slice(-2000)}\n--- stderr\n${stderr}`, check, SLOW).then(
        () => undefined,
      );
    const monitor: MonitorProcess = {
      child,
      stdout: () => stdout,
      stderr: () => stderr,
      exited,
      printed: (pattern, from = 0) =>
        seen(`stdout to match ${pattern}`, () => pattern.test(stdout.slice(from))),
      said: (text) => seen(`stderr to say ${JSON.stringify(text)}`, () => stderr.includes(text)),
    };
    monitors.push(monitor);
    return monitor;
  };

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-monitor-'));
    const sketchDir = join(workDir, 'echo');
    mkdirSync(sketchDir);
    writeFileSync(join(sketchDir, 'echo.ino'), ECHO_SKETCH);
    hexPath = (await buildFirmware({ sketchPath: sketchDir, board: 'uno', outDir: join(workDir, 'build') }))
      .hexPath;
    stateDir = join(workDir, 'uno');
    uno = await startSimulatedBoard({ board: 'uno', stateDir, firmwareHex: hexPath });
  }, SLOW);

  afterAll(async () => {
    for (const monitor of monitors) monitor.child.kill('SIGKILL');
    await uno?.stop();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }, SLOW);

  it(
    'prints timestamped lines, sends lines with CRLF, reconnects when the board restarts and closes on Ctrl-C',
    async () => {
      const portPath = uno!.portPath;
      const monitor = startMonitor('--port', portPath, '--timestamps', '--eol', 'crlf');
      await monitor.said(`Connected to ${portPath} at 9600 baud (Ctrl-C to quit)\n`);
      await monitor.printed(/^\d\d:\d\d:\d\d\.\d{3} -> tick \d+\r$/m);
      const lines = monitor.stdout().split('\n').slice(0, -1);
      for (const line of lines) expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} -> (echo ready|tick \d+)\r$/);

      // Enter sends CR LF; the end of stdin does not stop the monitor.
      monitor.child.stdin.end('ping\n');
      await monitor.printed(/ -> rx 70 69 6E 67 0D 0A\r$/m);

      await uno!.stop();
      await monitor.said(`-- ${portPath} disconnected (`);
      expect(monitor.stderr()).toMatch(
        new RegExp(`\\n-- ${portPath} disconnected \\([^)]+\\); waiting for it to come back --\\n`),
      );
      const beforeRestart = monitor.stdout().length;
      uno = await startSimulatedBoard({ board: 'uno', stateDir });
      await monitor.said(`-- reconnected to ${portPath} --\n`);
      // The restarted board runs its sketch (kept in flash) from the start again.
      await monitor.printed(/ -> echo ready\r\n[^]* -> tick \d+\r\n/, beforeRestart);

      monitor.child.kill('SIGINT');
      expect(await monitor.exited).toBe(0);
      expect(monitor.stderr()).toMatch(new RegExp(`-- closed ${portPath} \\(Ctrl-C\\) --\\n$`));
    },
    4 * SLOW,
  );

  it(
    'gives up in one line, exit 1, when the port does not come back',
    async () => {
      const portPath = uno!.portPath;
      const monitor = startMonitor('--port', portPath, '--reconnect-timeout', '2');
      await monitor.printed(/^tick \d+\r$/m);
      await uno!.stop();
      uno = undefined;
      expect(await monitor.exited).toBe(1);
      expect(monitor.stderr()).toMatch(
        new RegExp(`waiting for it to come back --\\nboardfleet: ${portPath} did not come back in 2 s\\n$`),
      );
    },
    2 * SLOW,
  );

  it(
    'refuses a port that does not exist and bad flags, each in one line',
    async () => {
      const cli = cliRunner({
        cwd: workDir,
        env: { BOARDFLEET_CACHE_DIR: join(workDir, 'cache') },
        timeoutMs: SLOW,
      });
      const missing = join(workDir, 'no-such-tty');
      expect((await cli.failing('monitor', '--port', missing)).stderr).toBe(
        `boardfleet: ${missing} does not exist: is the board plugged in? "boardfleet ports" lists what is connected\n`,
      );
      expect((await cli.failing('monitor', '--port', missing, '--eol', 'cr')).stderr).toBe(
        'boardfleet: --eol must be lf, crlf or none, not "cr"\n',
      );
      // Nothing plugged in that is a board, and no simulated one in this cache.
      expect((await cli.failing('monitor')).stderr).toMatch(
        /^boardfleet: No board found: no serial port has a known board's USB id and no simulated board runs\. .*\n$/,
      );
    },
    2 * SLOW,
  );
});
