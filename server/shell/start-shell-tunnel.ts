import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import type { ServerMetrics } from '../metrics/metrics.ts';
import { shellEnabled } from '../../protocol/device-config.ts';
import type { ShellInput } from '../../protocol/device-shell.ts';
import { AuditRepository } from '../audit/audit.repository.ts';
import type { OperatorAuthenticator } from '../auth/operator-authenticator.ts';
import type { Clock } from '../common/clock.ts';
import type { ServerConfig } from '../config/config.ts';
import type { Database } from '../db/database.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';
import { ShellSessionRepository } from './shell-session.repository.ts';
import { ShellTunnel } from './shell-tunnel.ts';
import { shellUpgradeListener } from './shell-upgrade.ts';

export interface RemoteShell {
  /** A `shell-output` message from a device. */
  receive(deviceId: string, payload: Buffer): void;
  presenceChanged(deviceId: string, online: boolean): void;
  /** Serves the shell's WebSocket on these servers (plain HTTP and HTTPS). */
  listen(...servers: HttpServer[]): void;
  /** Ends every session this replica holds, telling the devices. */
  stop(): Promise<void>;
}

/** The remote shell's server side, built from the server's long-lived parts (for the composition root). */
export function startShellTunnel(parts: {
  db: Database;
  config: Pick<ServerConfig, 'shellIdleSeconds' | 'shellTranscripts'>;
  authenticator: OperatorAuthenticator;
  devices: DeviceRepository;
  /** The device's effective configuration variables. */
  variables: (deviceId: string) => Promise<Readonly<Record<string, string>>>;
  publish: (deviceId: string, input: ShellInput) => Promise<void>;
  clock: Clock;
  metrics: ServerMetrics;
  logger: Logger;
}): RemoteShell {
  const audit = new AuditRepository(parts.db);
  const tunnel = new ShellTunnel({
    sessions: new ShellSessionRepository(parts.db),
    audit,
    publish: parts.publish,
    clock: parts.clock,
    idleSeconds: parts.config.shellIdleSeconds,
    transcripts: parts.config.shellTranscripts,
    metrics: parts.metrics,
    logger: parts.logger,
  });
  const upgrade = shellUpgradeListener({
    tunnel,
    authenticator: parts.authenticator,
    devices: parts.devices,
    shellEnabled: async (deviceId) => shellEnabled(await parts.variables(deviceId)),
    audit,
    clock: parts.clock,
    logger: parts.logger,
  });
  return {
    receive: (deviceId, payload) => tunnel.receive(deviceId, payload),
    presenceChanged: (deviceId, online) => tunnel.presenceChanged(deviceId, online),
    listen: (...servers) => {
      for (const server of servers) server.on('upgrade', upgrade);
    },
    stop: () => tunnel.stop(),
  };
}
