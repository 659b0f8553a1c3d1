import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN_FILE } from '../../protocol/api/session.ts';
import { CLI } from './agent-process.ts';
import { type DatabaseBackend, freePort } from './databases.ts';
import { TcpBalancer } from './tcp-balancer.ts';
import { eventually, TLS_ON_FREE_PORTS } from './test-server.ts';

/** One `boardfleet server` process of a cluster. */
export interface Replica {
  index: number;
  httpPort: number;
  process: ChildProcess | null;
  output(): string;
  running(): boolean;
}

/**
 * Several `boardfleet server` processes on one database, one data folder and one external broker
 * (`brokerEnv`: MQTT_URL and its credentials), each on its own HTTP port, behind a round-robin
 * balancer (`httpUrl`) as a deployment would put them.
 */
export interface ReplicaCluster {
  httpUrl: string;
  databaseUrl: string;
  dataDir: string;
  adminToken: string;
  replicas: Replica[];
  /** Through the balancer, with the admin token. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Starts replica `index` (again) and waits for it to answer /healthz. */
  start(index: number): Promise<void>;
  kill(index: number, signal: NodeJS.Signals): Promise<void>;
  dispose(): Promise<void>;
}

export async function startReplicaCluster(
  backend: DatabaseBackend,
  brokerEnv: Record<string, string>,
  count: number,
): Promise<ReplicaCluster> {
  const database = await backend.create();
  const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-replicas-'));
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const children: Array<ChildProcess | null> = ports.map(() => null);
  const outputs = ports.map(() => '');
  const balancer = new TcpBalancer(ports);
  const httpUrl = await balancer.start();

  const running = (index: number) => {
    const child = children[index];
    return !!child && child.exitCode === null && child.signalCode === null;
  };
  const cluster: ReplicaCluster = {
    httpUrl,
    databaseUrl: database.url,
    dataDir,
    adminToken: '',
    replicas: ports.map((httpPort, index) => ({
      index,
      httpPort,
      get process() {
        return children[index] ?? null;
      },
      output: () => outputs[index] ?? '',
      running: () => running(index),
    })),
    async api<T>(method: string, path: string, body?: unknown) {
      const response = await fetch(`${httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${cluster.adminToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
    },
    async start(index) {
      if (running(index)) throw new Error(`replica ${index} is running`);
      const port = ports[index]!;
      const child = spawn(process.execPath, [CLI, 'server'], {
        env: {
          ...process.env,
          ...brokerEnv,
          ...TLS_ON_FREE_PORTS,
          BOARDFLEET_DATA_DIR: dataDir,
          BOARDFLEET_HTTP_PORT: String(port),
          BOARDFLEET_HTTP_HOST: '127.0.0.1',
          DATABASE_URL: database.url,
          LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info',
          LOG_FORMAT: 'json',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children[index] = child;
      child.on('error', (error) => (outputs[index] += `spawn failed: ${error.message}\n`));
      child.stdout?.on('data', (data: Buffer) => (outputs[index] += data.toString()));
      child.stderr?.on('data', (data: Buffer) => (outputs[index] += data.toString()));
      await eventually(
        `replica ${index} answering /healthz`,
        async () => {
          if (!running(index)) throw new Error(`replica ${index} exited: ${outputs[index]}`);
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
        },
        60_000,
      );
      cluster.adminToken = readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
    },
    async kill(index, signal) {
      const child = children[index];
      if (!child || !running(index)) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
    async dispose() {
      await Promise.all(ports.map((_, index) => cluster.kill(index, 'SIGKILL')));
      await balancer.stop();
      await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return cluster;
}
