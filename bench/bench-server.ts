import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { type RunningServer, startServer } from '../server/boardfleet-server.ts';
import { ServerKeyRepository } from '../server/auth/server-key.repository.ts';
import { hashDeviceSecret } from '../server/common/secrets.ts';
import { loadServerConfig } from '../server/config/config.ts';
import { TLS_ON_FREE_PORTS } from '../test/support/test-server.ts';

/** A Boardfleet server on free loopback ports with SQLite in a temporary data dir; `env` adds or overrides its variables. */
export async function startBenchServer(
  env: Record<string, string> = {},
): Promise<RunningServer & { dispose(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-bench-'));
  const server = await startServer(
    loadServerConfig({
      ...TLS_ON_FREE_PORTS,
      BOARDFLEET_DATA_DIR: dataDir,
      BOARDFLEET_HTTP_PORT: '0',
      BOARDFLEET_MQTT_PORT: '0',
      BOARDFLEET_HTTP_HOST: '127.0.0.1',
      BOARDFLEET_MQTT_HOST: '127.0.0.1',
      ...env,
    }),
    { logger: pino({ level: 'warn' }) },
  );
  return {
    ...server,
    async dispose() {
      await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Every bench device's secret: the server keeps its hash, Mosquitto its own PBKDF2 of it. */
export const BENCH_DEVICE_SECRET = 'bfd_benchmark-secret';

/** The bench devices' ids, the same in every target so that their broker clients match. */
export function benchDeviceIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
}

/**
 * Registers N devices straight in the database, their secret hashed under the server's own key
 * as the server stores it; each connection pays its own check, as in production.
 */
export async function registerBenchDevices(server: RunningServer, count: number, board: string) {
  const secret = BENCH_DEVICE_SECRET;
  const key = await new ServerKeyRepository(server.db).loadOrCreate('device-secrets', Date.now());
  const secretHash = hashDeviceSecret(key, secret);
  const devices = benchDeviceIds(count).map((id) => ({ id, secret }));
  const now = Date.now();
  for (let i = 0; i < devices.length; i += 500) {
    await server.db
      .insertInto('devices')
      .values(
        devices
          .slice(i, i + 500)
          .map((d) => ({ id: d.id, name: d.id, board, secret_hash: secretHash, created_at: now, online: 0 })),
      )
      .execute();
  }
  return devices;
}
