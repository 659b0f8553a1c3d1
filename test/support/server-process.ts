import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN_FILE } from '../../protocol/api/session.ts';
import { CLI } from './agent-process.ts';
import { type DatabaseBackend, freePort } from './databases.ts';
import { eventually, TLS_ON_FREE_PORTS } from './test-server.ts';

/** `boardfleet server` as a child process, so a test can kill -9 it and start it again on the same ports. */
export interface ServerProcess {
  httpUrl: string;
  httpPort: number;
  mqttPort: number;
  dataDir: string;
  databaseUrl: string;
  adminToken: string;
  process: ChildProcess;
  output(): string;
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Kills the server with this signal and waits for it to have gone. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Starts a new server process on the same ports, data dir and database, with extra variables. */
  start(env?: Record<string, string>): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * `env` adds variables to every start (MQTT_URL and its credentials, say). `shareWith` makes this
 * server a replica of another: its database and data folder, which that one's dispose removes.
 */
export interface ServerProcessOptions {
  env?: Record<string, string>;
  shareWith?: Pick<ServerProcess, 'databaseUrl' | 'dataDir'>;
}

export async function startServerProcess(
  backend: DatabaseBackend,
  options: ServerProcessOptions = {},
): Promise<ServerProcess> {
  const { shareWith } = options;
  const database = shareWith
    ? { url: shareWith.databaseUrl, drop: async () => undefined }
    : await backend.create();
  const dataDir = shareWith?.dataDir ?? mkdtempSync(join(tmpdir(), 'boardfleet-server-process-'));
  const httpPort = await freePort();
  const mqttPort = await freePort();
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  let child: ChildProcess;
  let output = '';

  const server: ServerProcess = {
    httpUrl,
    httpPort,
    mqttPort,
    dataDir,
    databaseUrl: database.url,
    adminToken: '',
    get process() {
      return child;
    },
    output: () => output,
    async api<T>(method: string, path: string, body?: unknown) {
      const response = await fetch(`${httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${server.adminToken}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
    },
    async kill(signal) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
    async start(env = {}) {
      child = spawn(process.execPath, [CLI, 'server'], {
        env: {
          ...process.env,
          ...TLS_ON_FREE_PORTS,
          BOARDFLEET_DATA_DIR: dataDir,
          BOARDFLEET_HTTP_PORT: String(httpPort),
          BOARDFLEET_MQTT_PORT: String(mqttPort),
          BOARDFLEET_HTTP_HOST: '127.0.0.1',
          BOARDFLEET_MQTT_HOST: '127.0.0.1',
          DATABASE_URL: database.url,
          LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
          ...options.env,
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (data: Buffer) => (output += data.toString()));
      child.stderr?.on('data', (data: Buffer) => (output += data.toString()));
      await eventually(
        'server process answering /healthz',
        async () => {
          if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${output}`);
          return (await fetch(`${httpUrl}/healthz`)).ok;
        },
        30_000,
      );
      server.adminToken = readFileSync(join(dataDir, ADMIN_TOKEN_FILE), 'utf8').trim();
    },
    async dispose() {
      await server.kill('SIGKILL');
      await database.drop();
      if (!shareWith) rmSync(dataDir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
