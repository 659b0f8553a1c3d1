import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import type { SimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import type { LogLine } from '../../protocol/device-logs.ts';
import { CLI, type startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { waitForRolloutToSettle } from '../support/rollout-status.ts';
import { startSerialGateway } from '../support/serial-gateway.ts';
import { eventually, type TestServer } from '../support/test-server.ts';

/** simavr runs the board in real time: on a loaded two-core machine give each step room. */
const SLOW = 120_000;

const temporary = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** A running `boardfleet logs … --board -f --json`: the lines it printed and its stderr. */
interface Follower {
  child: ChildProcess;
  lines: LogLine[];
  stderr: () => string;
}

/**
 * Issue 18 item 1, the attached board's serial output in live logs, end to end: a real server, a
 * real agent process, a simulated Uno (simavr running the real optiboot and a sketch built by our
 * builder) on a real pty as the attached board, and `boardfleet logs --board -f --json`. While it
 * follows, a firmware rollout flashes the same port: the capture steps aside and comes back.
 */
describe("an attached board's serial output in live logs", () => {
  let server: TestServer;
  let uno: SimulatedBoard;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  const cli = () => cliRunner({ url: server.httpUrl, token: server.adminToken, timeoutMs: SLOW });

  function follow(...args: string[]): Follower {
    const child = spawn(process.execPath, [CLI, 'logs', 'serial-gateway', ...args], {
      env: {
        ...process.env,
        BOARDFLEET_URL: server.httpUrl,
        BOARDFLEET_TOKEN: server.adminToken,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let partial = '';
    const follower: Follower = { child, lines: [], stderr: () => stderr };
    child.on('error', (error) => {
      stderr += `spawn failed: ${error.message}\n`;
    });
    child.stderr?.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    child.stdout?.on('data', (data: Buffer) => {
      const parts = (partial + data.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const part of parts) follower.lines.push(JSON.parse(part) as LogLine);
    });
    return follower;
  }

  beforeAll(async () => {
    ({ server, uno, agent, deviceId } = await startSerialGateway('serial-gateway', SLOW));
  }, SLOW * 2);

  afterAll(async () => {
    if (process.env.DEBUG_E2E) console.log(agent?.output());
    if (agent) await stopProcess(agent, 'SIGTERM');
    await uno?.stop();
    await server?.dispose();
  });

  it(
    "follows the board's counter as board:<port>, keeps it through a firmware flash of the same port, and says when the port goes away",
    async () => {
      const source = `board:${uno.portPath}`;
      const follower = follow('--board', '-f', '--json');
      const texts = () => follower.lines.map((line) => line.text);
      const counts = () => follower.lines.filter((line) => /^count \d+$/.test(line.text));
      try {
        await eventually('20 counter lines from the board', () => counts().length >= 20, SLOW);
        expect(follower.lines.every((line) => line.source === source)).toBe(true);
        expect(follower.lines[0]).toMatchObject({
          stream: 'stderr',
          text: `-- serial capture of ${uno.portPath} at 115200 baud --`,
        });
        // The board printed them in order (opening the port resets it: the count may start over once).
        const numbers = counts().map((line) => Number(line.text.split(' ')[1]));
        expect(numbers.slice(-10)).toEqual([...Array(10).keys()].map((n) => (numbers.at(-10) as number) + n));

        // A rollout flashes our Firmata firmware onto the same port while the capture follows it.
        const firmata = await buildFirmware({
          recipe: 'firmata',
          board: 'uno',
          outDir: temporary('board-logs-firmata-'),
        });
        const artifact = await uploadArtifact(server, readFileSync(firmata.hexPath), {
          name: 'firmata',
          version: '1.0.0',
          boards: ['uno'],
          kind: 'mcu-firmware',
        });
        await server.api('POST', '/api/v1/releases', {
          name: 'firmata-1.0.0',
          artifacts: { uno: artifact.id },
        });
        const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
          release: 'firmata-1.0.0',
          target: { tags: ['serial'] },
          waves: [{ percent: 100, soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 120 }],
        });
        const done = await waitForRolloutToSettle(server, created.id, SLOW);
        expect(done.state).toBe('completed');
        expect(done.devices).toMatchObject([{ deviceId, state: 'committed' }]);
        await eventually(
          'the capture back after the flash and the probe',
          () => texts().filter((text) => text === '-- serial capture resumed --').length >= 2,
          SLOW,
        );
        const notices = follower.lines.filter((line) => line.stream === 'stderr').map((line) => line.text);
        expect(notices).toEqual([
          `-- serial capture of ${uno.portPath} at 115200 baud --`,
          '-- serial capture paused for flashing --',
          '-- serial capture resumed --',
          '-- serial capture paused for the Firmata probe --',
          '-- serial capture resumed --',
        ]);

        // The board goes away (unplugged): the capture ends with the reason; the agent lives on.
        await uno.stop();
        await eventually(
          'the capture ended',
          () => texts().some((text) => text.startsWith('-- serial capture ended: ')),
          SLOW,
        );
        expect(texts().at(-1)?.startsWith(`-- serial capture ended: ${uno.portPath} `)).toBe(true);
        expect(agent.exitCode).toBeNull();
        expect(follower.child.exitCode).toBeNull();
      } finally {
        follower.child.kill('SIGINT');
        await once(follower.child, 'exit');
      }
      const refused = await cli().failing('logs', 'serial-gateway', '--board', '/dev/ttyUSB9');
      expect(refused.stderr).toContain(
        `no board attached on /dev/ttyUSB9 (the attached board is board:${uno.portPath})`,
      );
    },
    SLOW * 4,
  );
});
