// Mosquitto for the fleet benchmark, configured by the code behind `boardfleet broker-config
// mosquitto` (server/broker/mosquitto/mosquitto-config.ts) and run as /usr/sbin/mosquitto.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  boardfleetEnv,
  DYNSEC_STATE_FILE,
  newMosquittoSetup,
  hashDynsecPassword,
  initialDynsecState,
  MOSQUITTO_CONF_FILE,
  MOSQUITTO_ENVIRONMENT,
  mosquittoConf,
} from '../server/broker/mosquitto/mosquitto-config.ts';
import { findMosquitto } from '../server/broker/mosquitto/mosquitto-install.ts';
import { deviceAcls, deviceRoleName } from '../server/broker/mosquitto/dynsec-acl.ts';
import { freePort } from '../test/support/databases.ts';
import { type MosquittoBroker, startMosquittoFromConfig } from '../test/support/mosquitto.ts';

/** Set by the parent for a target's process: MQTT_URL and Mosquitto's credentials, as JSON (not argv: ps shows that). */
export const BROKER_ENV_VARIABLE = 'BOARDFLEET_BENCH_BROKER_ENV';
/** '1' when the devices' Mosquitto clients are in its state file already. */
export const SEEDED_CLIENTS_VARIABLE = 'BOARDFLEET_BENCH_SEEDED_CLIENTS';

export interface BenchMosquitto {
  url: string;
  /** The server's variables, as boardfleet.env holds them (MQTT_URL and the four credentials). */
  env: Record<string, string>;
  /** Stops the running broker (SIGTERM: it saves its state) and starts it again on the same files. */
  restart(): Promise<void>;
  /** The running broker's peak resident set so far (VmHWM), in bytes. */
  peakRssBytes(): number;
  dispose(): Promise<void>;
}

/**
 * Writes mosquitto.conf, the dynamic-security state and boardfleet.env into a temporary folder on
 * a free port, with room for `connections` clients (the written default is 10,000), and starts it.
 * Each connection takes a file descriptor: Mosquitto inherits this process's `ulimit -n`.
 * `seededDevices` are written into the state file with the client and role DynsecAdmin.addDevice
 * creates, for runs that cannot wait for 10,000 registrations (Mosquitto 2.0 rewrites the whole
 * state file after every command, so registering N devices takes time in N²).
 */
export async function startBenchMosquitto(
  connections: number,
  seededDevices: Array<{ id: string; secret: string }> = [],
): Promise<BenchMosquitto> {
  const dir = mkdtempSync(join(tmpdir(), 'boardfleet-bench-mosquitto-'));
  const install = findMosquitto();
  const port = await freePort();
  const setup = newMosquittoSetup(dir, port, install.plugin);
  const conf = mosquittoConf(setup)
    .replace(/^max_connections \d+$/m, `max_connections ${connections}`)
    // One line per connect and disconnect of 10,000 clients is noise; errors and warnings stay.
    .replace(/^log_type (notice|information)\n/gm, '');
  const confPath = join(dir, MOSQUITTO_CONF_FILE);
  const state = initialDynsecState(setup);
  for (const device of seededDevices) {
    state.roles.push({ rolename: deviceRoleName(device.id), acls: deviceAcls(device.id) });
    state.clients.push({
      username: device.id,
      clientid: device.id,
      textname: device.id,
      roles: [{ rolename: deviceRoleName(device.id) }],
      ...hashDynsecPassword(device.secret),
    } as (typeof state.clients)[number]);
  }
  writeFileSync(join(dir, DYNSEC_STATE_FILE), JSON.stringify(state), { mode: 0o600 });
  writeFileSync(confPath, conf);
  const env = Object.fromEntries(
    boardfleetEnv(setup)
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
  // 127.0.0.1 rather than localhost: no IPv6 attempt first for 10,000 connections.
  env[MOSQUITTO_ENVIRONMENT.url] = `mqtt://127.0.0.1:${port}`;

  let broker: MosquittoBroker;
  try {
    // 10,000 clients' state takes Mosquitto a while to load on a loaded machine.
    broker = await startMosquittoFromConfig(confPath, { startTimeoutMs: 60_000 });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: env[MOSQUITTO_ENVIRONMENT.url]!,
    env,
    restart: () => broker.restart(),
    peakRssBytes() {
      const pid = broker.pid();
      const status = pid ? readFileSync(`/proc/${pid}/status`, 'utf8') : '';
      return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    },
    async dispose() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
