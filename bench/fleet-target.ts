// Child process of the fleet benchmark: runs one target (the Boardfleet server on its embedded
// broker or on Mosquitto, or a bare broker as the baseline), drives the heartbeat clients against
// it, and sends its figures back to the parent.
import { fork } from 'node:child_process';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions } from 'mqtt';
import { allDevicesTopic } from '../protocol/topics.ts';
import { MOSQUITTO_ENVIRONMENT } from '../server/broker/mosquitto/mosquitto-config.ts';
import { BROKER_ENV_VARIABLE, registerInMosquitto, SEEDED_CLIENTS_VARIABLE } from './bench-mosquitto.ts';
import { type BenchDatabase, startBenchReplicas } from './bench-replicas.ts';
import { BENCH_DEVICE_SECRET, benchDeviceIds } from './bench-server.ts';

export type FleetTarget = 'server' | 'server-tls' | 'bare-aedes' | 'server-mosquitto' | 'bare-mosquitto';

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
  /** The server: every replica together; the baseline: its subscriber's process. */
  rssBytes: number;
  /** The server's replicas, one by one. */
  replicaRssBytes?: number[];
  replicaStored?: number[];
  /** On Mosquitto: how long giving every device its dynamic-security client took (server target only). */
  registerSeconds?: number;
}

/** How the server side runs: replicas sharing one database of this kind. */
export interface ServerSide {
  replicas: number;
  database: BenchDatabase;
}

/** `brokerEnv`: MQTT_URL and the credentials of a running Mosquitto; null for the embedded broker. */
async function runAgainstServer(
  count: number,
  intervalMs: number,
  durationMs: number,
  brokerEnv: Record<string, string> | null,
  side: ServerSide,
  /** Devices connect to the embedded broker over TLS, verifying the fleet CA. */
  tls = false,
): Promise<RunResult> {
  const servers = await startBenchReplicas({
    count: side.replicas,
    database: side.database,
    // Embedded: room for every device beside the server's own session (the default cap is 10,000).
    env: brokerEnv ?? { BOARDFLEET_MQTT_MAX_CONNECTIONS: String(Math.max(10_000, count + 100)) },
  });
  try {
    await servers.registerDevices(count, 'bench');
    const devices = benchDeviceIds(count).map((id) => ({ id, secret: BENCH_DEVICE_SECRET }));
    // Seeded: the parent wrote the devices' clients into Mosquitto's state file before starting it.
    const registerSeconds =
      brokerEnv && process.env[SEEDED_CLIENTS_VARIABLE] !== '1'
        ? await registerInMosquitto(brokerEnv, devices)
        : undefined;
    const entry = servers.replicas[0]!;
    const { connectSeconds, published } = await runClients(
      brokerEnv?.[MOSQUITTO_ENVIRONMENT.url] ?? (tls ? entry.mqttsUrl! : entry.mqttUrl),
      devices,
      intervalMs,
      durationMs,
      () => servers.measure(),
      tls ? entry.caPem : undefined,
    );
    const reports = await Promise.all(servers.replicas.map((replica) => replica.report()));
    const alive = await Promise.all(
      servers.replicas.map((replica) =>
        fetch(`${replica.httpUrl}/healthz`).then(
          (response) => response.ok,
          () => false,
        ),
      ),
    );
    const stored = sum(reports.map((report) => report.stored));
    const counted = reports.filter((report) => report.stored > 0);
    const first = Math.min(...counted.map((report) => report.firstStoredAt));
    const last = Math.max(...counted.map((report) => report.lastStoredAt));
    return {
      connectSeconds,
      offered: offeredHeartbeats(count, intervalMs, durationMs),
      published,
      stored,
      shed: sum(reports.map((report) => report.shed)),
      alive: alive.every(Boolean),
      storedPerSecond: counted.length > 0 ? stored / ((last - first) / 1000 || 1) : 0,
      latencies: reports.flatMap((report) => report.latencies),
      rssBytes: sum(reports.map((report) => report.rssBytes)),
      replicaRssBytes: reports.map((report) => report.rssBytes),
      replicaStored: reports.map((report) => report.stored),
      ...(registerSeconds === undefined ? {} : { registerSeconds }),
    };
  } finally {
    await servers.dispose();
  }
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);

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
    const { connectSeconds, published } = await runClients(url, devices, intervalMs, durationMs);
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

function runClients(
  url: string,
  devices: Array<{ id: string; secret: string }>,
  intervalMs: number,
  durationMs: number,
  /** Runs once every client is connected, before the first heartbeat. */
  beforeHeartbeats: () => Promise<void> = async () => undefined,
  ca?: string,
): Promise<{ connectSeconds: number; published: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./fleet-clients.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
    child.send({ url, devices, intervalMs, durationMs, connectConcurrency: 100, ...(ca ? { ca } : {}) });
    let connectSeconds = 0;
    child.on('message', (message: { type: string; seconds?: number; published?: number }) => {
      if (message.type === 'connected') {
        connectSeconds = message.seconds ?? 0;
        process.stdout.write(
          `  ${devices.length} clients connected to ${url} in ${connectSeconds.toFixed(2)} s\n`,
        );
        beforeHeartbeats().then(() => child.send({ type: 'go' }), reject);
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
  const [target, countArg, intervalArg, durationArg, sideArg] = process.argv.slice(2);
  const [count, intervalMs, durationMs] = [Number(countArg), Number(intervalArg), Number(durationArg)];
  const side = JSON.parse(sideArg ?? '{}') as ServerSide;
  const brokerEnvJson = process.env[BROKER_ENV_VARIABLE];
  const brokerEnv = brokerEnvJson ? (JSON.parse(brokerEnvJson) as Record<string, string>) : null;
  const targets: Record<FleetTarget, () => Promise<RunResult>> = {
    server: () => runAgainstServer(count, intervalMs, durationMs, null, side),
    'server-tls': () => runAgainstServer(count, intervalMs, durationMs, null, side, true),
    'bare-aedes': () => runAgainstBareAedes(count, intervalMs, durationMs),
    'server-mosquitto': () => runAgainstServer(count, intervalMs, durationMs, brokerEnv!, side),
    'bare-mosquitto': () => runAgainstBareMosquitto(count, intervalMs, durationMs, brokerEnv!),
  };
  const result = await targets[target as FleetTarget]();
  process.send(result, () => process.exit(0));
}
