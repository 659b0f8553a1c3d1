// Child process of the fleet benchmark: runs one target (the Boardfleet server on its embedded
// broker or on Mosquitto, or a bare broker as the baseline), drives the heartbeat clients against
// it, and sends its figures back to the parent.
import { fork } from 'node:child_process';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions } from 'mqtt';
import pino from 'pino';
import type { Counter } from 'prom-client';
import { allDevicesTopic } from '../protocol/topics.ts';
import { MosquittoBroker } from '../server/broker/mosquitto/mosquitto-broker.ts';
import { MOSQUITTO_ENVIRONMENT } from '../server/broker/mosquitto/mosquitto-config.ts';
import { BROKER_ENV_VARIABLE, SEEDED_CLIENTS_VARIABLE } from './bench-mosquitto.ts';
import {
  BENCH_DEVICE_SECRET,
  benchDeviceIds,
  registerBenchDevices,
  startBenchServer,
} from './bench-server.ts';

export type FleetTarget = 'server' | 'bare-aedes' | 'server-mosquitto' | 'bare-mosquitto';

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
  /** On Mosquitto: how long giving every device its dynamic-security client took (server target only). */
  registerSeconds?: number;
}

/**
 * Registrations in flight at once. Mosquitto handles the commands one by one, so more only queue
 * there; with 10,000 clients each command takes ~0.2 s, and 100 queued would pass the admin's 10 s timeout.
 */
const REGISTER_CONCURRENCY = 10;

/** `brokerEnv`: MQTT_URL and the credentials of a running Mosquitto; null for the embedded broker. */
async function runAgainstServer(
  count: number,
  intervalMs: number,
  durationMs: number,
  brokerEnv: Record<string, string> | null,
): Promise<RunResult> {
  // Embedded: room for every device beside the server's own session (the default cap is 10,000).
  const server = await startBenchServer(
    brokerEnv ?? { BOARDFLEET_MQTT_MAX_CONNECTIONS: String(Math.max(10_000, count + 100)) },
  );
  try {
    const devices = await registerBenchDevices(server, count, 'bench');
    // Seeded: the parent wrote the devices' clients into Mosquitto's state file before starting it.
    const registerSeconds =
      brokerEnv && process.env[SEEDED_CLIENTS_VARIABLE] !== '1'
        ? await registerInMosquitto(brokerEnv, devices)
        : undefined;
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
      brokerEnv?.[MOSQUITTO_ENVIRONMENT.url] ?? `mqtt://127.0.0.1:${server.mqttPort}`,
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
      ...(registerSeconds === undefined ? {} : { registerSeconds }),
    };
  } finally {
    await server.dispose();
  }
}

/**
 * Gives each device its Mosquitto client and role through MosquittoBroker.registerDevice, as
 * device creation does; the devices' rows are already in the database.
 */
async function registerInMosquitto(
  brokerEnv: Record<string, string>,
  devices: Array<{ id: string; secret: string }>,
): Promise<number> {
  const env = MOSQUITTO_ENVIRONMENT;
  const broker = new MosquittoBroker({
    url: brokerEnv[env.url]!,
    admin: { username: brokerEnv[env.adminUsername]!, password: brokerEnv[env.adminPassword]! },
    server: { username: brokerEnv[env.serverUsername]!, password: brokerEnv[env.serverPassword]! },
    logger: pino({ level: 'warn' }),
  });
  await broker.start();
  try {
    const started = performance.now();
    let next = 0;
    let registered = 0;
    const worker = async () => {
      while (next < devices.length) {
        const device = devices[next++]!;
        await broker.registerDevice(device.id, device.secret);
        // Progress, as this takes minutes at 10,000 devices.
        if (++registered % 1000 === 0 && registered < devices.length) {
          const seconds = ((performance.now() - started) / 1000).toFixed(0);
          process.stdout.write(`  … ${registered} clients after ${seconds} s\n`);
        }
      }
    };
    await Promise.all(Array.from({ length: REGISTER_CONCURRENCY }, worker));
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(`  ${devices.length} dynamic-security clients created in ${seconds.toFixed(2)} s\n`);
    return seconds;
  } finally {
    await broker.stop();
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
  try {
    const devices = benchDeviceIds(count).map((id) => ({ id, secret: 'x' }));
    const result = await runBaseline(`mqtt://127.0.0.1:${port}`, {}, devices, intervalMs, durationMs);
    return { ...result, alive: !broker.closed };
  } finally {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    tcp.close();
  }
}

/**
 * Raw Mosquitto with the server run's configuration and dynamic-security state: each device logs
 * in with its own client, and one subscriber with the server's credential receives the heartbeats.
 */
async function runAgainstBareMosquitto(
  count: number,
  intervalMs: number,
  durationMs: number,
  brokerEnv: Record<string, string>,
): Promise<RunResult> {
  const env = MOSQUITTO_ENVIRONMENT;
  const url = brokerEnv[env.url]!;
  const devices = benchDeviceIds(count).map((id) => ({ id, secret: BENCH_DEVICE_SECRET }));
  const subscriberLogin = {
    username: brokerEnv[env.serverUsername],
    password: brokerEnv[env.serverPassword],
  };
  const result = await runBaseline(url, subscriberLogin, devices, intervalMs, durationMs);
  // Mosquitto still answering a new login at the end.
  const alive = await mqtt
    .connectAsync(url, { ...subscriberLogin, protocolVersion: 4, reconnectPeriod: 0 })
    .then(
      (client) => client.endAsync().then(() => true),
      () => false,
    );
  return { ...result, alive };
}

/** The heartbeat clients against a bare broker, delivered to one subscriber on the devices' health topics. */
async function runBaseline(
  url: string,
  subscriberLogin: IClientOptions,
  devices: Array<{ id: string; secret: string }>,
  intervalMs: number,
  durationMs: number,
): Promise<Omit<RunResult, 'alive'>> {
  const subscriber = await mqtt.connectAsync(url, { ...subscriberLogin, protocolVersion: 4 });
  const granted = await subscriber.subscribeAsync(allDevicesTopic('health'), { qos: 1 });
  if (granted.some((grant) => grant.qos === 128)) throw new Error(`${url} refused the baseline subscription`);
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
    const { connectSeconds, published } = await runClients(url, devices, intervalMs, durationMs, () => {
      delivered = 0;
      latencies.length = 0;
      first = 0;
    });
    return {
      connectSeconds,
      offered: offeredHeartbeats(devices.length, intervalMs, durationMs),
      published,
      stored: delivered,
      shed: 0,
      storedPerSecond: delivered / ((last - first) / 1000 || 1),
      latencies,
      rssBytes: process.memoryUsage().rss,
    };
  } finally {
    await subscriber.endAsync();
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
  const [target, countArg, intervalArg, durationArg] = process.argv.slice(2);
  const [count, intervalMs, durationMs] = [Number(countArg), Number(intervalArg), Number(durationArg)];
  const brokerEnvJson = process.env[BROKER_ENV_VARIABLE];
  const brokerEnv = brokerEnvJson ? (JSON.parse(brokerEnvJson) as Record<string, string>) : null;
  const targets: Record<FleetTarget, () => Promise<RunResult>> = {
    server: () => runAgainstServer(count, intervalMs, durationMs, null),
    'bare-aedes': () => runAgainstBareAedes(count, intervalMs, durationMs),
    'server-mosquitto': () => runAgainstServer(count, intervalMs, durationMs, brokerEnv!),
    'bare-mosquitto': () => runAgainstBareMosquitto(count, intervalMs, durationMs, brokerEnv!),
  };
  const result = await targets[target as FleetTarget]();
  process.send(result, () => process.exit(0));
}
