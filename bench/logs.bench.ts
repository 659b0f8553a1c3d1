// `npm run bench -- logs [--lines 300] [--interval 20]`: live logs, from an app's line to the
// watcher. A server, a real agent process and an app bundle that prints `tick <n> <ms since the
// epoch>` every --interval ms; the benchmark follows the app through the server's logs endpoint (as
// `boardfleet logs -f` does) and times each line from the app's clock to its arrival. Baseline,
// measured in the same run on the same broker: a bare MQTT publish (QoS 1, from a device's login,
// on its `logs` topic, the same payload size as the agent's batches) to a subscriber. Also the
// agent's CPU while the app prints and nobody watches, then while a watch streams it.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import type { DevicePage } from '../protocol/api/devices.ts';
import type { LogBatch, LogLine } from '../protocol/device-logs.ts';
import { allDevicesTopic, deviceTopic } from '../protocol/topics.ts';
import { releaseAppBundle } from '../test/support/app-bundles.ts';
import { BenchUsageError } from './bench-args.ts';
import { BENCH_DEVICE_SECRET, registerBenchDevices, startBenchServer } from './bench-server.ts';
import { percentile } from './stats.ts';

const CLI = fileURLToPath(new URL('../cli/boardfleet.js', import.meta.url));
const BOARD = 'generic-x64';
/** The agent connects, and the app is rolled out and printing, within this. */
const READY_DEADLINE_MS = 3 * 60_000;
/** How long the agent's CPU is sampled, idle and then streaming. */
const CPU_WINDOW_MS = 5_000;
/** Lines that arrive in the first moments of a watch are its backlog, not live: left out. */
const WARM_UP_MS = 500;

/** Prints `tick <n> <ms since the epoch>` every INTERVAL ms, forever. */
const tickerScript = (intervalMs: number) => `
let n = 0;
process.stdout.on('error', () => process.exit(0));
setInterval(() => process.stdout.write('tick ' + n++ + ' ' + Date.now() + '\\n'), ${intervalMs});
`;

interface Figures {
  p50: number;
  p95: number;
  p99: number;
  count: number;
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { lines: { type: 'string', default: '300' }, interval: { type: 'string', default: '20' } },
  });
  const lines = Number(values.lines);
  const intervalMs = Number(values.interval);
  if (!Number.isInteger(lines) || lines < 10)
    throw new BenchUsageError(`--lines ${values.lines}: 10 or more`);
  if (!Number.isInteger(intervalMs) || intervalMs < 1)
    throw new BenchUsageError(`--interval ${values.interval}: milliseconds, 1 or more`);

  const work = mkdtempSync(join(tmpdir(), 'logs-bench-'));
  const serverDir = join(work, 'server');
  const server = await startBenchServer({ BOARDFLEET_DATA_DIR: serverDir });
  let agent: ChildProcess | null = null;
  try {
    const say = (line: string) => process.stderr.write(`${line}\n`);
    const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const response = await fetch(`${server.httpUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
      return (await response.json()) as T;
    };
    say('starting an agent process and rolling out the ticker app…');
    const { token } = await api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'bench' });
    const tokenFile = join(work, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    agent = spawn(
      process.execPath,
      [
        ...[CLI, 'agent', '--server', server.httpUrl, '--provisioning-token-file', tokenFile],
        ...['--name', 'logs-bench', '--board', BOARD, '--data-dir', join(work, 'agent'), '--heartbeat', '5'],
      ],
      { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] },
    );
    agent.on('error', (error) => say(`agent: ${error.message}`));
    const deviceId = await until('the agent online', async () => {
      const page = await api<DevicePage>('GET', '/api/v1/devices?limit=10');
      return page.devices.find((device) => device.name === 'logs-bench' && device.online)?.id;
    });
    const { release } = await releaseAppBundle(server, BOARD, {
      name: 'ticker',
      version: '1.0.0',
      script: tickerScript(intervalMs),
    });
    const rollout = await api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { deviceIds: [deviceId] },
      waves: [{ percent: 100, soakSeconds: 1 }],
    });
    await until('the ticker rolled out', async () => {
      const status = await api<{ state: string }>('GET', `/api/v1/rollouts/${rollout.id}`);
      if (status.state === 'paused' || status.state === 'failed')
        throw new Error(`the rollout ${status.state}`);
      return status.state === 'completed' ? true : undefined;
    });

    const serverLogin = {
      protocolVersion: 4 as const,
      username: 'boardfleet-server',
      password: readFileSync(join(serverDir, 'server-mqtt.secret'), 'utf8').trim(),
      clientId: `logs-bench-observer-${process.pid}`,
    };
    const observer = await mqtt.connectAsync(server.mqttUrl, serverLogin);
    observer.on('error', () => undefined);
    const batchBytes: number[] = [];
    observer.on('message', (_topic, payload) => batchBytes.push(payload.length));
    await observer.subscribeAsync(allDevicesTopic('logs'), { qos: 0 });

    const pid = agent.pid as number;
    say(`the app prints; measuring the agent's CPU with nobody watching (${CPU_WINDOW_MS / 1000} s)…`);
    const idleCpu = await cpuPercent(pid, CPU_WINDOW_MS);
    say(`following ${lines} live lines through GET /api/v1/devices/{id}/logs?follow=true…`);
    const { latencies, streamingCpu } = await followLines(server, deviceId, lines, () =>
      cpuPercent(pid, CPU_WINDOW_MS),
    );
    await observer.endAsync(true);
    const payloadBytes = Math.round(percentile(batchBytes, 50));

    say(`baseline: ${lines} bare MQTT publishes of ${payloadBytes} bytes on the same broker…`);
    const [device] = await registerBenchDevices(server, 1, BOARD);
    const baseline = await publishToSubscriber(server.mqttUrl, device as { id: string }, serverLogin, {
      count: lines,
      intervalMs,
      payloadBytes,
    });

    // The app stamps its lines with Date.now(): whole milliseconds.
    const ms = (value: number) => `${Math.round(value)} ms`;
    const row = (label: string, figures: Figures) =>
      `${label.padEnd(56)}${ms(figures.p50).padEnd(9)}${ms(figures.p95).padEnd(9)}${ms(figures.p99).padEnd(9)}${figures.count}\n`;
    const app = summarise(latencies);
    process.stdout.write(
      `live logs benchmark: one agent process (Node.js ${process.version}), an app printing a line every ${intervalMs} ms, ` +
        `followed through the server's logs endpoint (server-sent events, as boardfleet logs -f); embedded broker, SQLite\n` +
        `baseline, measured in this run on the same broker: a bare MQTT publish (QoS 1, a device's login, its logs topic, ` +
        `${payloadBytes} bytes: the agent's median batch) → a subscriber\n\n` +
        `${'figure'.padEnd(56)}${'p50'.padEnd(9)}${'p95'.padEnd(9)}${'p99'.padEnd(9)}lines\n` +
        row("app's line → watcher (agent → broker → server → SSE)", app) +
        row('bare MQTT publish → subscriber (baseline)', summarise(baseline)) +
        `\nadded by live logs over the bare broker hop: p50 ${ms(app.p50 - percentile(baseline, 50))}, p99 ${ms(app.p99 - percentile(baseline, 99))}\n` +
        `agent CPU (one core = 100 %): ${idleCpu.toFixed(1)} % while the app prints and nobody watches, ` +
        `${streamingCpu.toFixed(1)} % while a watch streams it (+${(streamingCpu - idleCpu).toFixed(1)} points)\n`,
    );
  } finally {
    if (agent && agent.exitCode === null) {
      agent.kill('SIGTERM');
      await once(agent, 'exit');
    }
    await server.dispose();
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Follows the ticker through the logs endpoint until `count` live lines have come (the first
 * moments' lines are the backlog and left out); `duringStream` runs while it streams.
 */
async function followLines(
  server: { httpUrl: string; adminToken: string },
  deviceId: string,
  count: number,
  duringStream: () => Promise<number>,
): Promise<{ latencies: number[]; streamingCpu: number }> {
  const abort = new AbortController();
  const response = await fetch(
    `${server.httpUrl}/api/v1/devices/${deviceId}/logs?app=ticker&follow=true&limit=1`,
    {
      headers: { authorization: `Bearer ${server.adminToken}`, accept: 'text/event-stream' },
      signal: abort.signal,
    },
  );
  if (!response.ok || !response.body) throw new Error(`the logs endpoint answered ${response.status}`);
  const startedAt = Date.now();
  const latencies: number[] = [];
  const cpu = duringStream();
  let buffer = '';
  try {
    for await (const chunk of response.body.pipeThrough(new TextDecoderStream())) {
      const receivedAt = Date.now();
      buffer += chunk;
      let boundary: number;
      while ((boundary = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        if (!block.includes('event: line')) continue;
        const data = block.split('\n').find((field) => field.startsWith('data:'));
        const line = JSON.parse((data ?? 'data:{}').slice(5)) as LogLine;
        const printedAt = Number(/^tick \d+ (\d+)$/.exec(line.text)?.[1]);
        if (Number.isFinite(printedAt) && printedAt > startedAt + WARM_UP_MS)
          latencies.push(receivedAt - printedAt);
      }
      if (latencies.length >= count) break;
    }
    return { latencies: latencies.slice(0, count), streamingCpu: await cpu };
  } finally {
    abort.abort();
  }
}

/**
 * The baseline: `count` publishes, one every `intervalMs`, each carrying its send time in a logs
 * batch padded to `payloadBytes`, from the device's login to the server's login subscribed to every
 * device's `logs` (the server itself ignores them: no watch of its has that id).
 */
async function publishToSubscriber(
  url: string,
  device: { id: string },
  serverLogin: mqtt.IClientOptions,
  options: { count: number; intervalMs: number; payloadBytes: number },
): Promise<number[]> {
  const subscriber = await mqtt.connectAsync(url, {
    ...serverLogin,
    clientId: `${serverLogin.clientId}-baseline`,
  });
  const publisher = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    clientId: device.id,
    username: device.id,
    password: BENCH_DEVICE_SECRET,
    reconnectPeriod: 0,
  });
  subscriber.on('error', () => undefined);
  publisher.on('error', () => undefined);
  try {
    const latencies: number[] = [];
    let done = () => undefined as void;
    const all = new Promise<void>((resolve) => {
      done = resolve;
    });
    subscriber.on('message', (_topic, payload) => {
      const batch = JSON.parse(payload.toString()) as LogBatch;
      latencies.push(Date.now() - (batch.lines[0]?.at ?? Number.NaN));
      if (latencies.length >= options.count) done();
    });
    await subscriber.subscribeAsync(deviceTopic(device.id, 'logs'), { qos: 1 });
    for (let n = 0; n < options.count; n++) {
      const at = Date.now();
      const batch: LogBatch = {
        watch: 'baseline',
        lines: [{ seq: n, at, source: 'app:ticker', stream: 'stdout', text: `tick ${n} ${at}` }],
        through: n,
      };
      const bare = JSON.stringify(batch).length;
      batch.lines[0]!.text += ' '.repeat(Math.max(0, options.payloadBytes - bare));
      publisher.publish(deviceTopic(device.id, 'logs'), JSON.stringify(batch), { qos: 1 });
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
    await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 10_000))]);
    return latencies;
  } finally {
    await Promise.all([subscriber.endAsync(true), publisher.endAsync(true)]);
  }
}

/** The process's CPU use over `windowMs` (user + system, from /proc), in percent of one core. */
async function cpuPercent(pid: number, windowMs: number): Promise<number> {
  const ticks = () => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
    return Number(fields[11]) + Number(fields[12]);
  };
  const [before, startedAt] = [ticks(), performance.now()];
  await new Promise((resolve) => setTimeout(resolve, windowMs));
  // Clock ticks are 1/100 s on Linux.
  return ((ticks() - before) * 10 * 100) / (performance.now() - startedAt);
}

function summarise(values: number[]): Figures {
  return {
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    count: values.length,
  };
}

async function until<T>(what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + READY_DEADLINE_MS;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${READY_DEADLINE_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
