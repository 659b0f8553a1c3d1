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
import pino from 'pino';
import { MosquittoBroker } from '../server/broker/mosquitto/mosquitto-broker.ts';
import { freePort } from '../test/support/databases.ts';
import {
  type MosquittoBroker as MosquittoProcess,
  startMosquittoFromConfig,
} from '../test/support/mosquitto.ts';
import { ensureServerCertificateFiles } from '../server/tls/fleet-tls.ts';

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
  /**
   * Clients Mosquitto started dropping messages for since the last call: their queue was past
   * max_queued_messages (a notice line, once each time a client's queue overflows).
   */
  droppingClients(): string[];
  dispose(): Promise<void>;
}

const DROPPING = /Outgoing messages are being dropped for client (\S+)\./g;

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
  const tls = await ensureServerCertificateFiles(join(dir, 'data'), ['localhost', '127.0.0.1'], Date.now());
  const setup = newMosquittoSetup(
    dir,
    { port, plainHost: '127.0.0.1', tlsPort: await freePort(), tls, deviceCertificates: 'off' },
    install.plugin,
  );
  const conf = mosquittoConf(setup)
    .replace(/^max_connections \d+$/m, `max_connections ${connections}`)
    // Kept: errors, warnings and notices (among them "Outgoing messages are being dropped").
    .replace(/^log_type information\n/gm, '');
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

  let broker: MosquittoProcess;
  try {
    // 10,000 clients' state takes Mosquitto a while to load on a loaded machine.
    broker = await startMosquittoFromConfig(confPath, { startTimeoutMs: 60_000 });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  let logRead = 0;
  return {
    url: env[MOSQUITTO_ENVIRONMENT.url]!,
    env,
    restart: () => broker.restart(),
    peakRssBytes() {
      const pid = broker.pid();
      const status = pid ? readFileSync(`/proc/${pid}/status`, 'utf8') : '';
      return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
    },
    droppingClients() {
      const output = broker.output();
      const dropped = [...output.slice(logRead).matchAll(DROPPING)].map((match) => match[1]!);
      logRead = output.length;
      return dropped;
    },
    async dispose() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Registrations in flight at once. Mosquitto handles the commands one by one, so more only queue
 * there; with 10,000 clients each command takes ~0.2 s, and 100 queued would pass the admin's 10 s timeout.
 */
const REGISTER_CONCURRENCY = 10;

/**
 * Gives each device its Mosquitto client and role through MosquittoBroker.registerDevice, as
 * device creation does (the devices' rows are in the database already); returns the seconds taken.
 */
export async function registerInMosquitto(
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
