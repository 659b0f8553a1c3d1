// The server side of a benchmark: N Boardfleet server processes (bench-replica.ts) sharing one
// database, one broker and one data folder, on their own HTTP ports — what a scale-out deployment
// runs behind its load balancer. One replica on SQLite with the embedded broker is the default.
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DatabaseBackend, freePort, postgresBackend, sqliteBackend } from '../test/support/databases.ts';
import { TLS_ON_FREE_PORTS } from '../test/support/test-server.ts';

export type BenchDatabase = 'sqlite' | 'postgresql';

export type ReplicaRequest =
  | { type: 'register'; count: number; board: string }
  | { type: 'measure' }
  | { type: 'report' }
  | { type: 'stop' };

/** What a replica measured: heartbeats committed since 'measure', its CPU and memory. */
export interface ReplicaReport {
  type: 'report';
  stored: number;
  firstStoredAt: number;
  lastStoredAt: number;
  /** Device publish → batch committed, per heartbeat, in ms. */
  latencies: number[];
  /** boardfleet_mqtt_shed_total + boardfleet_telemetry_dropped_total. */
  shed: number;
  rssBytes: number;
  peakRssBytes: number;
  /** User + system CPU of the process since it started. */
  cpuSeconds: number;
}

export type ReplicaReply = { type: 'register' | 'measure' | 'stop' } | ReplicaReport;

export interface ReplicaReady {
  httpUrl: string;
  mqttUrl: string;
  /** The embedded broker over TLS; null on Mosquitto. */
  mqttsUrl: string | null;
  /** The fleet CA the TLS listeners' certificates chain to. */
  caPem: string;
  adminToken: string;
}

/** What a replica sends: once that it is ready, then one reply (or error) per request id. */
export type ReplicaMessage =
  { ready: ReplicaReady } | { id: number; reply: ReplicaReply } | { id: number; error: string };

export interface BenchReplica {
  pid: number;
  httpUrl: string;
  /** The broker devices connect to: the embedded one of this replica, or the shared MQTT_URL. */
  mqttUrl: string;
  mqttsUrl: string | null;
  caPem: string;
  adminToken: string;
  report(): Promise<ReplicaReport>;
}

export interface BenchReplicas {
  replicas: BenchReplica[];
  /** The replicas' shared database (the benchmark reads what the server recorded). */
  databaseUrl: string;
  /** Registers the bench devices (benchDeviceIds, BENCH_DEVICE_SECRET) through the first replica. */
  registerDevices(count: number, board: string): Promise<void>;
  /** Starts counting heartbeats on every replica from now. */
  measure(): Promise<void>;
  /** Stops every replica cleanly, then drops the database and the data folder. */
  dispose(): Promise<void>;
}

/** Clean stops that take longer than this are cut short with SIGKILL. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * Starts `count` replicas one after another (the first migrates the database) on a fresh database.
 * `env` is added to each replica's environment: MQTT_URL and its credentials for Mosquitto.
 */
export async function startBenchReplicas(options: {
  count: number;
  database: BenchDatabase;
  env?: Record<string, string>;
}): Promise<BenchReplicas> {
  const backend: DatabaseBackend = options.database === 'postgresql' ? postgresBackend : sqliteBackend;
  const database = await backend.create();
  const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-bench-replicas-'));
  const children: ChildProcess[] = [];
  const replicas: Array<BenchReplica & { call(request: ReplicaRequest): Promise<ReplicaReply> }> = [];
  const dispose = async () => {
    await Promise.all(replicas.map((replica) => replica.call({ type: 'stop' }).catch(() => undefined)));
    await Promise.all(children.map((child) => exited(child)));
    await database.drop();
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    for (let index = 0; index < options.count; index++) {
      const child = fork(new URL('./bench-replica.ts', import.meta.url), [], {
        env: {
          ...process.env,
          ...TLS_ON_FREE_PORTS,
          BOARDFLEET_DATA_DIR: dataDir,
          DATABASE_URL: database.url,
          BOARDFLEET_HTTP_HOST: '127.0.0.1',
          BOARDFLEET_HTTP_PORT: String(await freePort()),
          BOARDFLEET_MQTT_HOST: '127.0.0.1',
          BOARDFLEET_MQTT_PORT: '0',
          ...options.env,
        },
        execArgv: ['--import', 'tsx'],
      });
      children.push(child);
      replicas.push(await connectReplica(child));
    }
  } catch (error) {
    await dispose();
    throw error;
  }
  const [first] = replicas;
  return {
    replicas,
    databaseUrl: database.url,
    async registerDevices(count, board) {
      await first!.call({ type: 'register', count, board });
    },
    async measure() {
      await Promise.all(replicas.map((replica) => replica.call({ type: 'measure' })));
    },
    dispose,
  };
}

/** Waits for the replica's ready message and wraps its request/reply channel. */
async function connectReplica(child: ChildProcess) {
  const pending = new Map<number, { resolve(reply: ReplicaReply): void; reject(error: Error): void }>();
  let nextId = 0;
  let failure: Error | null = null;
  const fail = (error: Error) => {
    failure ??= error;
    for (const waiter of pending.values()) waiter.reject(failure);
    pending.clear();
  };
  child.on('error', fail);
  child.once('exit', (code, signal) =>
    fail(new Error(`server replica ${child.pid} exited (${code ?? signal})`)),
  );
  const ready = new Promise<ReplicaReady>((resolve, reject) => {
    child.once('exit', () => reject(failure));
    child.on('message', (message: ReplicaMessage) => {
      if ('ready' in message) return resolve(message.ready);
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if ('error' in message) waiter?.reject(new Error(message.error));
      else waiter?.resolve(message.reply);
    });
  });
  const call = (request: ReplicaRequest) =>
    new Promise<ReplicaReply>((resolve, reject) => {
      if (failure) return reject(failure);
      const id = nextId++;
      pending.set(id, { resolve, reject });
      child.send({ id, request });
    });
  return {
    pid: child.pid!,
    ...(await ready),
    call,
    report: () => call({ type: 'report' }) as Promise<ReplicaReport>,
  };
}

/** Resolves once the child has exited; SIGKILL past the stop timeout. */
async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await once(child, 'exit');
  clearTimeout(killer);
}
