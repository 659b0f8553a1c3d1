import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BOARDFLEET_ENV_FILE,
  MOSQUITTO_CONF_FILE,
  MOSQUITTO_ENVIRONMENT,
} from '../../server/broker/mosquitto/mosquitto-config.ts';
import { SERVER_MQTT_USERNAME } from '../../server/broker/embedded-broker.ts';
import { cliRunner } from './cli-runner.ts';
import { freePort } from './databases.ts';
import { type MosquittoBroker, startMosquittoFromConfig } from './mosquitto.ts';

/** An MQTT credential: the server's, for a test that watches what reaches the server. */
export interface MqttCredential {
  username: string;
  password: string;
}

/** A broker a test server runs on. */
export interface BrokerForServer {
  /** Variables that put the server on this broker; none for the embedded one. */
  env: Record<string, string>;
  /** The server's own credential on this broker, for a server whose data folder is `dataDir`. */
  serverCredential(dataDir: string): MqttCredential;
  /** The Mosquitto process, or null for the embedded broker. */
  mosquitto: MosquittoBroker | null;
  dispose(): Promise<void>;
}

/** The KEY=value lines of an env file, comments left out. */
export function parseEnvFile(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/**
 * Mosquitto as the README sets it up: `boardfleet broker-config mosquitto --out DIR --port P`
 * (the real CLI), then `mosquitto -c DIR/mosquitto.conf`, and DIR/boardfleet.env for the server.
 */
export async function startMosquittoForServer(): Promise<BrokerForServer & { mosquitto: MosquittoBroker }> {
  const workDir = mkdtempSync(join(tmpdir(), 'boardfleet-mosquitto-server-'));
  try {
    const brokerDir = join(workDir, 'broker');
    await cliRunner({ cwd: workDir }).ok(
      ...['broker-config', 'mosquitto', '--out', brokerDir, '--port', String(await freePort())],
      ...['--tls-port', String(await freePort()), '--data-dir', join(workDir, 'data')],
    );
    const env = parseEnvFile(readFileSync(join(brokerDir, BOARDFLEET_ENV_FILE), 'utf8'));
    // The servers of these tests keep data folders of their own, not the one whose certificate
    // Mosquitto presents: theirs are not Mosquitto's to reload (mosquitto-tls.e2e covers that).
    delete env[MOSQUITTO_ENVIRONMENT.pidFile];
    const mosquitto = await startMosquittoFromConfig(join(brokerDir, MOSQUITTO_CONF_FILE));
    return {
      env,
      mosquitto,
      serverCredential: () => ({
        username: env[MOSQUITTO_ENVIRONMENT.serverUsername] ?? '',
        password: env[MOSQUITTO_ENVIRONMENT.serverPassword] ?? '',
      }),
      async dispose() {
        await mosquitto.stop();
        rmSync(workDir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(workDir, { recursive: true, force: true });
    throw error;
  }
}

/** The embedded broker: nothing to start, the server's credential is in its data folder. */
async function embeddedBroker(): Promise<BrokerForServer> {
  return {
    env: {},
    mosquitto: null,
    serverCredential: (dataDir) => ({
      username: SERVER_MQTT_USERNAME,
      password: readFileSync(join(dataDir, 'server-mqtt.secret'), 'utf8').trim(),
    }),
    dispose: async () => undefined,
  };
}

/** Every broker the server runs on, for `describe.each` suites. */
export const brokerModes: Array<{ name: string; start: () => Promise<BrokerForServer> }> = [
  { name: 'embedded', start: embeddedBroker },
  { name: 'mosquitto', start: startMosquittoForServer },
];
