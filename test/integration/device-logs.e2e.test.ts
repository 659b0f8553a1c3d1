import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage } from '../../protocol/api/devices.ts';
import type { LogLine } from '../../protocol/device-logs.ts';
import { allDevicesTopic } from '../../protocol/topics.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { launchChromium } from '../support/chromium.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'generic-x64';
const SLOW = 90_000;

/**
 * Prints `tick <n> <ms since the epoch>` every 50 ms; `n` goes on across restarts of the app (kept
 * in a file once the line was written), so the numbers a watcher sees should never go back.
 */
const TICKER = `
const fs = require('node:fs');
let n = 0;
try { n = Number(fs.readFileSync('counter', 'utf8')) || 0; } catch {}
process.stdout.on('error', () => process.exit(0));
process.stderr.write('ticker starting at ' + n + '\\n');
setInterval(() => {
  process.stdout.write('tick ' + n + ' ' + Date.now() + '\\n', (error) => {
    if (error) return;
    n++;
    fs.writeFileSync('counter', String(n));
  });
}, 50);
`;

/** A running `boardfleet logs … -f --json`: the lines it printed (each with when the test read it) and its stderr. */
interface Follower {
  child: ChildProcess;
  lines: Array<LogLine & { receivedAt: number }>;
  stderr: () => string;
}

/** The lines of `source` the agent kept in its ring, read from its segment files. */
function ringLines(dataDir: string, source: string): LogLine[] {
  const dir = join(dataDir, 'logs');
  return readdirSync(dir)
    .sort()
    .flatMap((name) => readFileSync(join(dir, name), 'utf8').split('\n'))
    .filter(Boolean)
    .map((text) => JSON.parse(text) as LogLine)
    .filter((line) => line.source === source);
}

const tickNumber = (line: LogLine) => Number(/^tick (\d+) /.exec(line.text)?.[1] ?? Number.NaN);
const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

describe('live device logs from a real agent', () => {
  let server: TestServer;
  let token: string;
  let agent: ReturnType<typeof startAgentProcess>;
  let dataDir: string;
  let deviceId: string;
  const cli = () => cliRunner({ url: server.httpUrl, token: server.adminToken, timeoutMs: SLOW });

  const agentArgs = () => [
    ...['--server', server.httpUrl, '--provisioning-token-file', secretFile(token)],
    ...['--name', 'ticker-pi', '--board', BOARD, '--data-dir', dataDir, '--heartbeat', '1'],
  ];

  const online = async () =>
    (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
      (device) => device.name === 'ticker-pi',
    )?.online;

  function follow(...args: string[]): Follower {
    const child = spawn(process.execPath, [CLI, 'logs', 'ticker-pi', ...args], {
      env: {
        ...process.env,
        BOARDFLEET_URL: server.httpUrl,
        BOARDFLEET_TOKEN: server.adminToken,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const follower: Follower = { child, lines: [], stderr: () => stderr };
    let stderr = '';
    let partial = '';
    child.on('error', (error) => {
      stderr += `spawn failed: ${error.message}\n`;
    });
    child.stderr?.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    child.stdout?.on('data', (data: Buffer) => {
      const receivedAt = Date.now();
      const parts = (partial + data.toString()).split('\n');
      partial = parts.pop() ?? '';
      for (const part of parts) follower.lines.push({ ...(JSON.parse(part) as LogLine), receivedAt });
    });
    return follower;
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    token = (await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'logs' }))
      .body.token;
    dataDir = mkdtempSync(join(tmpdir(), 'bf-logs-agent-'));
    agent = startAgentProcess(agentArgs());
    deviceId = await eventually(
      'the agent online',
      async () =>
        (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
          (device) => device.name === 'ticker-pi' && device.online,
        )?.id,
      SLOW,
    );
    const { release } = await releaseAppBundle(server, BOARD, {
      name: 'ticker',
      version: '1.0.0',
      script: TICKER,
    });
    const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { deviceIds: [deviceId] },
      waves: [{ percent: 100, soakSeconds: 1 }],
    });
    expect(created.status).toBe(201);
    await eventually(
      'the ticker rolled out',
      async () =>
        (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${created.body.id}`)).body.state ===
        'completed',
      SLOW,
    );
  }, SLOW * 2);

  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGKILL');
    await server?.dispose();
  });

  it(
    'follows an app across an agent restart with no gap and no repeat, and the app line reaches the watcher quickly',
    async () => {
      const follower = follow('--app', 'ticker', '-f', '--json');
      /** Lines the app printed once the watcher was reading (not the backlog): their delay is the live latency. */
      const live = () => {
        const reading = (follower.lines[0]?.receivedAt ?? Number.POSITIVE_INFINITY) + 500;
        return follower.lines.filter(
          (line) => /^tick \d+ \d+$/.test(line.text) && Number(line.text.split(' ')[2]) > reading,
        );
      };
      try {
        await eventually('200 live lines', () => live().length >= 200, SLOW);
        const beforeRestart = follower.lines.length;
        await stopProcess(agent, 'SIGKILL');
        await eventually('the follower told the device went offline', () =>
          follower.stderr().includes('-- device offline, waiting --'),
        );
        agent = startAgentProcess(agentArgs());
        await eventually(
          'the follower told the device is back',
          () => follower.stderr().includes('-- device online again --'),
          SLOW,
        );
        await eventually(
          '40 lines after the restart',
          () => follower.lines.length >= beforeRestart + 40,
          SLOW,
        );
        follower.child.kill('SIGINT');
        const [code] = (await once(follower.child, 'exit')) as [number | null];
        expect(code).toBe(0);

        const seen = follower.lines;
        expect(seen.every((line) => line.source === 'app:ticker')).toBe(true);
        // No repeat: sequence and tick numbers only go up.
        for (let index = 1; index < seen.length; index++) {
          expect(seen[index]?.seq).toBeGreaterThan(seen[index - 1]?.seq as number);
        }
        const ticks = seen.map(tickNumber).filter((n) => !Number.isNaN(n));
        expect(ticks.every((n, index) => index === 0 || n > (ticks[index - 1] as number))).toBe(true);
        // No gap: exactly the lines the device kept of the app from the first to the last one seen.
        const first = seen[0]?.seq as number;
        const last = seen.at(-1)?.seq as number;
        const kept = ringLines(dataDir, 'app:ticker').filter((line) => line.seq >= first && line.seq <= last);
        expect(seen.map((line) => line.seq)).toEqual(kept.map((line) => line.seq));
        // The app restarted with the agent and its numbers carry on: the ticks kept are contiguous too.
        const keptTicks = kept.map(tickNumber).filter((n) => !Number.isNaN(n));
        expect(keptTicks.at(-1)).toBeGreaterThan(ticks[0] as number);
        expect(
          seen.some((line) => line.stream === 'stderr' && line.text.startsWith('ticker starting at')),
        ).toBe(true);

        // Latency of live lines of the first run: the app's clock → the watcher read it.
        const latencies = live()
          .filter((line) => line.seq <= (seen[beforeRestart - 1]?.seq as number))
          .map((line) => line.receivedAt - Number(line.text.split(' ')[2]))
          .sort((a, b) => a - b);
        console.log(
          `app line → watcher: p50 ${percentile(latencies, 50)} ms, p99 ${percentile(latencies, 99)} ms over ${latencies.length} lines`,
        );
        expect(percentile(latencies, 50)).toBeLessThan(2_000);
      } finally {
        follower.child.kill('SIGKILL');
      }
    },
    SLOW * 3,
  );

  it(
    'shows the agent its own log, and refuses an app the device does not have',
    async () => {
      await eventually('the agent online again', online, SLOW);
      const { stdout } = await cli().ok('logs', 'ticker-pi', '--json', '--limit', '500');
      const lines = stdout
        .trim()
        .split('\n')
        .map((text) => JSON.parse(text) as LogLine);
      expect(lines.some((line) => line.source === 'agent')).toBe(true);
      expect(lines.some((line) => line.source === 'app:ticker')).toBe(true);

      const human = await cli().ok('logs', 'ticker-pi', '--app', 'ticker', '--limit', '3');
      expect(human.stdout.trim().split('\n')).toHaveLength(3);
      expect(human.stdout).toMatch(/^\d{2}:\d{2}:\d{2}\.\d{3} app:ticker tick \d+ \d+$/m);

      const refused = await cli().failing('logs', 'ticker-pi', '--app', 'nope');
      expect(refused.stderr).toContain('no app named nope on this device (apps: ticker)');
    },
    SLOW,
  );

  it(
    'stops streaming once the watcher leaves',
    async () => {
      await eventually('the agent online again', online, SLOW);
      const observer = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.mqttPort}`, {
        protocolVersion: 4,
        username: 'boardfleet-server',
        password: readFileSync(join(server.dataDir, 'server-mqtt.secret'), 'utf8').trim(),
      });
      observer.on('error', () => undefined);
      try {
        let published = 0;
        observer.on('message', () => published++);
        await observer.subscribeAsync(allDevicesTopic('logs'), { qos: 0 });
        const follower = follow('--app', 'ticker', '-f', '--json');
        await eventually('lines streamed', () => follower.lines.length >= 10 && published > 0, SLOW);
        follower.child.kill('SIGINT');
        await once(follower.child, 'exit');
        // The app goes on printing; once the stop has surely arrived (a second of the app's lines
        // later), nothing more is published while it prints another second's worth.
        const lastSeen = follower.lines.at(-1)?.seq as number;
        const ticksAfter = (count: number, after: number) => () =>
          ringLines(dataDir, 'app:ticker').filter((line) => line.seq > after).length >= count;
        await eventually('the app printed on', ticksAfter(20, lastSeen), SLOW);
        const countAtQuiet = published;
        const quietFrom = ringLines(dataDir, 'app:ticker').at(-1)?.seq as number;
        await eventually('the app printed a second more', ticksAfter(20, quietFrom), SLOW);
        expect(published).toBe(countAtQuiet);
      } finally {
        await observer.endAsync();
      }
    },
    SLOW,
  );

  it(
    'follows the log live on the device page of the dashboard, one app or all',
    async () => {
      await eventually('the agent online again', online, SLOW);
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        await page.goto(server.httpUrl);
        await page.getByLabel('Operator token').fill(server.adminToken);
        await page.getByRole('button', { name: 'Sign in' }).click();
        await page.goto(`${server.httpUrl}/devices/${deviceId}`);
        const lines = page.getByTestId('device-log-lines');
        await lines
          .getByText(/app:ticker tick \d+/)
          .first()
          .waitFor({ timeout: SLOW });
        const tickOnScreen = async () => {
          const text = (await lines.textContent()) ?? '';
          return Math.max(...[...text.matchAll(/tick (\d+) /g)].map((match) => Number(match[1])));
        };
        // It follows: a newer tick shows up without a reload.
        const first = await tickOnScreen();
        await eventually('a newer tick on the page', async () => (await tickOnScreen()) > first + 5, SLOW);
        await page.getByLabel('Only the lines of this app').fill('nope');
        await page.getByRole('button', { name: 'Show' }).click();
        await page
          .getByTestId('device-logs-status')
          .getByText('no app named nope')
          .waitFor({ timeout: SLOW });
      } finally {
        await browser.close();
      }
    },
    SLOW,
  );
});
