// `npm run bench -- rollout [--devices 1000]`: N simulated devices (real agent code, simulated
// installs that really download and verify) take a small bundle in 3 waves with zero soak,
// through the Boardfleet server; baseline: a raw broker round-trip to the same N clients.
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { sha256 } from '../lib/hash.ts';
import { registerBenchDevices, startBenchServer } from './bench-server.ts';
import { percentile } from './stats.ts';

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { devices: { type: 'string', default: '1000' } } });
  const count = Number(values.devices);
  process.stdout.write(
    `rollout benchmark: ${count} simulated devices, 3 waves (1% → 10% → 100%), soak 0\n\n`,
  );
  const server = await measureRollout(count);
  const baseline = await measureBrokerRoundTrip(count);
  const rows: Array<[string, string, string]> = [
    ['notify fan-out p50 (ms)', server.fanoutP50.toFixed(0), baseline.p50.toFixed(1)],
    ['notify fan-out p99 (ms)', server.fanoutP99.toFixed(0), baseline.p99.toFixed(1)],
    ['all done (s)', server.totalSeconds.toFixed(2), (baseline.totalMs / 1000).toFixed(3)],
    ['server CPU (s)', server.cpuSeconds.toFixed(2), ''],
    ['server RSS (MiB)', (server.rssBytes / 2 ** 20).toFixed(0), ''],
  ];
  process.stdout.write(
    `${'figure'.padEnd(26)}${'boardfleet rollout'.padEnd(22)}raw broker round-trip (baseline)\n`,
  );
  for (const [label, a, b] of rows) process.stdout.write(`${label.padEnd(26)}${a.padEnd(22)}${b}\n`);
  process.stdout.write(
    `\nfan-out: wave start → device received its desired state (waves start one after another, so the\n` +
      `later waves' figures include the earlier waves). baseline: one publish to each of ${count} device\n` +
      `topics on a bare Aedes → each client's reply received. committed: ${server.committed}/${count}.\n`,
  );
}

async function measureRollout(count: number) {
  const server = await startBenchServer();
  let devices: ChildProcess | null = null;
  try {
    const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const response = await fetch(`${server.httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${server.adminToken}`,
          ...(body instanceof Uint8Array
            ? { 'content-type': 'application/octet-stream' }
            : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) }),
      });
      return (await response.json()) as T;
    };
    const bundle = randomBytes(16 * 1024);
    const query = new URLSearchParams({
      name: 'bench-app',
      version: '1.0.0',
      kind: 'app-bundle',
      boards: 'rpi-4b',
      sha256: sha256(bundle),
      size: String(bundle.length),
    });
    const artifact = await api<{ id: string }>('POST', `/api/v1/artifacts?${query}`, bundle);
    await api('POST', '/api/v1/releases', { name: 'bench', artifacts: { 'rpi-4b': artifact.id } });
    const list = await registerBenchDevices(server, count, 'rpi-4b');
    const { publicKeyPem } = await api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key');
    const setupStarted = Date.now();
    devices = fork(
      new URL('./rollout-devices.ts', import.meta.url),
      [
        JSON.stringify({
          serverUrl: server.httpUrl,
          mqttUrl: `mqtt://127.0.0.1:${server.mqttPort}`,
          fleetPublicKeyPem: publicKeyPem,
          devices: list,
        }),
      ],
      {
        execArgv: ['--import', 'tsx'],
      },
    );
    await once(devices, 'message');
    process.stdout.write(
      `  ${count} simulated devices online in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s\n`,
    );
    await server.ingest.drain();

    const cpuBefore = process.cpuUsage();
    const started = Date.now();
    const waves = [1, 10, 100].map((percent) => ({
      percent,
      soakSeconds: 0,
      maxParallel: count,
      errorThresholdPercent: 0,
    }));
    const rollout = await api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: 'bench',
      target: { boards: ['rpi-4b'] },
      waves,
    });
    let status: {
      state: string;
      waves: Array<{ startedAt: number | null }>;
      devices: Array<{ deviceId: string; waveIndex: number; state: string }>;
    };
    for (;;) {
      status = await api('GET', `/api/v1/rollouts/${rollout.id}`);
      if (status.state !== 'running') break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const totalSeconds = (Date.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    devices.send({ type: 'report' });
    const [report] = (await once(devices, 'message')) as [{ at: Record<string, number> }];
    const fanout = status.devices
      .map(
        (device) =>
          (report.at[device.deviceId] ?? Number.NaN) -
          (status.waves[device.waveIndex]?.startedAt ?? Number.NaN),
      )
      .filter((ms) => Number.isFinite(ms));
    return {
      fanoutP50: percentile(fanout, 50),
      fanoutP99: percentile(fanout, 99),
      totalSeconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      rssBytes: process.memoryUsage().rss,
      committed: status.devices.filter((device) => device.state === 'committed').length,
    };
  } finally {
    if (devices) {
      devices.send({ type: 'stop' });
      await once(devices, 'exit');
    }
    await server.dispose();
  }
}

async function measureBrokerRoundTrip(count: number) {
  const broker = await Aedes.createBroker();
  const tcp = createServer(broker.handle);
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const url = `mqtt://127.0.0.1:${(tcp.address() as { port: number }).port}`;
  const clients = [];
  for (let i = 0; i < count; i += 100) {
    clients.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(100, count - i) }, async (_, j) => {
          const id = `rt-${i + j}`;
          const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: id });
          await client.subscribeAsync(`desired/${id}`, { qos: 1 });
          client.on('message', (_topic, payload) => client.publish(`reply/${id}`, payload, { qos: 1 }));
          return client;
        }),
      )),
    );
  }
  const server = await mqtt.connectAsync(url, { protocolVersion: 4 });
  await server.subscribeAsync('reply/+', { qos: 1 });
  const rtts: number[] = [];
  const started = Date.now();
  const done = new Promise<void>((resolve) => {
    server.on('message', (_topic, payload) => {
      rtts.push(Date.now() - Number(payload.toString()));
      if (rtts.length === count) resolve();
    });
  });
  for (let i = 0; i < count; i++) server.publish(`desired/rt-${i}`, String(Date.now()), { qos: 1 });
  await done;
  const totalMs = Date.now() - started;
  await Promise.all([...clients, server].map((client) => client.endAsync()));
  await new Promise<void>((resolve) => broker.close(() => resolve()));
  tcp.close();
  return { p50: percentile(rtts, 50), p99: percentile(rtts, 99), totalMs };
}
