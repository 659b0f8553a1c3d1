// Child process of the fleet benchmark: runs one target (the Boardfleet server or a bare Aedes),
// drives the heartbeat clients against it, and sends its figures back to the parent.
import { fork } from 'node:child_process';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import type { Counter } from 'prom-client';
import { allDevicesTopic } from '../protocol/topics.ts';
import { registerBenchDevices, startBenchServer } from './bench-server.ts';

export interface RunResult {
  connectSeconds: number;
  /** Heartbeats the devices were asked to send while connected: devices × duration / interval. */
  offered: number;
  published: number;
  stored: number;
  /** Messages the server dropped and counted: broker shed plus telemetry dropped (0 for the baseline). */
  shed: number;
  /** Whether the target still answered at the end (the server's /healthz; the bare broker is in-process). */
  alive: boolean;
  storedPerSecond: number;
  latencies: number[];
  rssBytes: number;
}

async function runAgainstServer(count: number, intervalMs: number, durationMs: number): Promise<RunResult> {
  // Room for every device beside the server's own session: the default cap is 10,000 connections.
  const server = await startBenchServer({
    BOARDFLEET_MQTT_MAX_CONNECTIONS: String(Math.max(10_000, count + 100)),
  });
  try {
    const devices = await registerBenchDevices(server, count, 'bench');
    const latencies: number[] = [];
    let stored = 0;
    let firstStoredAt = 0;
    let lastStoredAt = 0;
    server.ingest.on('health-stored', (samples) => {
      const storedAt = Date.now();
      firstStoredAt ||= storedAt;
      lastStoredAt = storedAt;
      stored += samples.length;
      for (const sample of samples) latencies.push(storedAt - sample.health.at);
    });
    const { connectSeconds, published } = await runClients(
      `mqtt://127.0.0.1:${server.mqttPort}`,
      devices,
      intervalMs,
      durationMs,
      () => {
        stored = 0;
        latencies.length = 0;
        firstStoredAt = 0;
      },
    );
    await server.ingest.drain();
    const rssBytes = process.memoryUsage().rss;
    const alive = await fetch(`${server.httpUrl}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    return {
      connectSeconds,
      offered: offeredHeartbeats(count, intervalMs, durationMs),
      published,
      stored,
      shed:
        (await counterTotal(server.metrics.mqttShed)) + (await counterTotal(server.metrics.telemetryDropped)),
      alive,
      storedPerSecond: stored / ((lastStoredAt - firstStoredAt) / 1000 || 1),
      latencies,
      rssBytes,
    };
  } finally {
    await server.dispose();
  }
}

async function runAgainstBareAedes(
  count: number,
  intervalMs: number,
  durationMs: number,
): Promise<RunResult> {
  // Unbounded routing as in the server: with Aedes' default (a queue behind 100 in-flight messages)
  // this baseline itself dies at 20,000/s with the stack overflow of issue 13.
  const broker = await Aedes.createBroker({ concurrency: 0 });
  const tcp = createServer(broker.handle);
  await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
  const port = (tcp.address() as { port: number }).port;
  const subscriber = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
  await subscriber.subscribeAsync(allDevicesTopic('health'), { qos: 1 });
  const latencies: number[] = [];
  let delivered = 0;
  let first = 0;
  let last = 0;
  subscriber.on('message', (_topic, payload) => {
    const now = Date.now();
    first ||= now;
    last = now;
    delivered++;
    latencies.push(now - (JSON.parse(payload.toString()) as { at: number }).at);
  });
  try {
    const devices = Array.from({ length: count }, (_, i) => ({
      id: `bench-${String(i).padStart(6, '0')}`,
      secret: 'x',
    }));
    const { connectSeconds, published } = await runClients(
      `mqtt://127.0.0.1:${port}`,
      devices,
      intervalMs,
      durationMs,
      () => {
        delivered = 0;
        latencies.length = 0;
        first = 0;
      },
    );
    return {
      connectSeconds,
      offered: offeredHeartbeats(count, intervalMs, durationMs),
      published,
      stored: delivered,
      shed: 0,
      alive: !broker.closed,
      storedPerSecond: delivered / ((last - first) / 1000 || 1),
      latencies,
      rssBytes: process.memoryUsage().rss,
    };
  } finally {
    await subscriber.endAsync();
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    tcp.close();
  }
}

function offeredHeartbeats(count: number, intervalMs: number, durationMs: number): number {
  return Math.floor((count * durationMs) / intervalMs);
}

async function counterTotal(counter: Counter<string>): Promise<number> {
  return (await counter.get()).values.reduce((total, sample) => total + sample.value, 0);
}

function runClients(
  url: string,
  devices: Array<{ id: string; secret: string }>,
  intervalMs: number,
  durationMs: number,
  onConnected: () => void,
): Promise<{ connectSeconds: number; published: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./fleet-clients.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
    child.send({ url, devices, intervalMs, durationMs, connectConcurrency: 100 });
    let connectSeconds = 0;
    child.on('message', (message: { type: string; seconds?: number; published?: number }) => {
      if (message.type === 'connected') {
        connectSeconds = message.seconds ?? 0;
        process.stdout.write(
          `  ${devices.length} clients connected to ${url} in ${connectSeconds.toFixed(2)} s\n`,
        );
        onConnected();
      }
      if (message.type === 'done') {
        // Let the last in-flight heartbeats land before counting.
        setTimeout(() => resolve({ connectSeconds, published: message.published ?? 0 }), 500);
      }
    });
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`benchmark clients exited with ${code}`));
    });
  });
}

if (process.send) {
  const [target, count, intervalMs, durationMs] = process.argv.slice(2);
  const runTarget = target === 'server' ? runAgainstServer : runAgainstBareAedes;
  const result = await runTarget(Number(count), Number(intervalMs), Number(durationMs));
  process.send(result, () => process.exit(0));
}
