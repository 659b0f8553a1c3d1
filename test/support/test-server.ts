import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { type RunningServer, startServer } from '../../server/boardfleet-server.ts';
import type { Clock } from '../../server/common/clock.ts';
import { loadServerConfig } from '../../server/config/config.ts';
import type { DatabaseBackend } from './databases.ts';

export interface TestServer extends RunningServer {
  dataDir: string;
  databaseUrl: string;
  api<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
  ): Promise<{ status: number; body: T }>;
  /** Stops the server and starts it again on the same ports, data dir and database. */
  restart(): Promise<TestServer>;
  dispose(): Promise<void>;
}

/**
 * HTTPS and MQTT over TLS on free ports of loopback, so that test servers running side by side do
 * not fight over 8443 and 8883.
 */
export const TLS_ON_FREE_PORTS = {
  BOARDFLEET_HTTPS_PORT: '0',
  BOARDFLEET_HTTPS_HOST: '127.0.0.1',
  BOARDFLEET_MQTTS_PORT: '0',
  BOARDFLEET_MQTTS_HOST: '127.0.0.1',
  BOARDFLEET_TLS_NAMES: 'localhost,127.0.0.1',
} as const;

/**
 * A real server on free ports with its own data dir and a fresh database of the given backend.
 * `env` adds configuration variables (MQTT_URL and its credentials put it on an external broker;
 * BOARDFLEET_DATA_DIR, a data folder made beforehand);
 * `logger` replaces the silent one, for tests that read what the server logs; `clock` the system
 * clock, for tests that need the server to be at another time (kept across restarts).
 */
export async function startTestServer(
  backend: DatabaseBackend,
  env: Record<string, string> = {},
  options: { logger?: Logger; clock?: Clock } = {},
): Promise<TestServer> {
  const database = await backend.create();
  // A data folder made beforehand (one `broker-config` wrote certificates into) is used as given.
  const dataDir = env.BOARDFLEET_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'boardfleet-server-'));
  const launch = async (ports: {
    http: number;
    mqtt: number;
    https: number;
    mqtts: number;
  }): Promise<TestServer> => {
    const config = loadServerConfig({
      ...TLS_ON_FREE_PORTS,
      BOARDFLEET_HTTPS_PORT: String(ports.https),
      BOARDFLEET_MQTTS_PORT: String(ports.mqtts),
      BOARDFLEET_DATA_DIR: dataDir,
      BOARDFLEET_HTTP_PORT: String(ports.http),
      BOARDFLEET_MQTT_PORT: String(ports.mqtt),
      BOARDFLEET_HTTP_HOST: '127.0.0.1',
      BOARDFLEET_MQTT_HOST: '127.0.0.1',
      DATABASE_URL: database.url,
      ...env,
    });
    const running = await startServer(config, {
      logger: options.logger ?? pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    const server: TestServer = {
      ...running,
      dataDir,
      databaseUrl: database.url,
      async api<T>(method: string, path: string, body?: unknown, token = running.adminToken) {
        const response = await fetch(`${running.httpUrl}${path}`, {
          method,
          headers: {
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await response.text();
        return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
      },
      async restart() {
        await running.stop();
        return launch({
          http: running.httpPort,
          mqtt: running.mqttPort,
          https: running.httpsPort,
          mqtts: running.mqttsPort ?? 0,
        });
      },
      async dispose() {
        await running.stop();
        await database.drop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
    return server;
  };
  return launch({ http: 0, mqtt: 0, https: 0, mqtts: 0 });
}

/** Polls until `check` returns a value other than undefined/false, or fails naming what was awaited. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`,
  );
}
