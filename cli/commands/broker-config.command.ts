import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect, isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  BOARDFLEET_ENV_FILE,
  boardfleetEnv,
  DYNSEC_STATE_FILE,
  newMosquittoSetup,
  initialDynsecState,
  MOSQUITTO_CONF_FILE,
  mosquittoConf,
} from '../../server/broker/mosquitto/mosquitto-config.ts';
import { findMosquitto } from '../../server/broker/mosquitto/mosquitto-install.ts';
import { SERVER_ENVIRONMENT, tlsNamesOf } from '../../server/config/config.ts';
import { ensureServerCertificateFiles } from '../../server/tls/fleet-tls.ts';

export function register(program: Command): void {
  const brokerConfig = program
    .command('broker-config')
    .description('Configure an external MQTT broker for the server (instead of its embedded one)')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet broker-config mosquitto --out ./mosquitto
  boardfleet broker-config mosquitto --out /srv/boardfleet/mosquitto --port 1884 --tls-port 8884 --data-dir /srv/boardfleet/data`,
    );

  brokerConfig
    .command('mosquitto')
    .description(
      "Write mosquitto.conf (a plain listener for the server, MQTT over TLS for devices with the server certificate, dynamic-security plugin, persistence, limits), the plugin's first state and boardfleet.env (the server's variables) into the --out folder",
    )
    .requiredOption('--out <dir>', 'folder for the configuration, the credentials and the persistence file')
    .option('--port <port>', 'port of the plain listener, for the server', '1883')
    .option(
      '--plain-host <address>',
      'address the plain listener binds (0.0.0.0 opens it to the network)',
      '127.0.0.1',
    )
    .option('--tls-port <port>', 'port of MQTT over TLS, for devices', '8883')
    .option(
      '--device-certificates <mode>',
      'required: devices present a certificate of the fleet CA on the TLS listener (mTLS), as BOARDFLEET_DEVICE_CERTIFICATES=required on the embedded broker',
      'off',
    )
    .option(
      '--data-dir <dir>',
      "the server's data folder, whose certificate (tls/server.pem) Mosquitto presents; made now if the server has not run",
      process.env.BOARDFLEET_DATA_DIR ?? SERVER_ENVIRONMENT.BOARDFLEET_DATA_DIR.default,
    )
    .option(
      '--force',
      "replace an earlier run's files: new credentials, and every device client they held is gone",
    )
    .action(async (options: BrokerConfigOptions) => {
      const port = portNumber('--port', options.port);
      const tlsPort = portNumber('--tls-port', options.tlsPort);
      if (tlsPort === port) throw new BoardfleetError('invalid-option', '--tls-port must differ from --port');
      if (options.deviceCertificates !== 'off' && options.deviceCertificates !== 'required')
        throw new BoardfleetError(
          'invalid-option',
          `--device-certificates ${options.deviceCertificates}: expected off or required`,
        );
      if (isIP(options.plainHost) === 0)
        throw new BoardfleetError(
          'invalid-option',
          `--plain-host ${options.plainHost}: expected an IP address`,
        );
      const dir = resolve(options.out);
      const dataDir = resolve(options.dataDir);
      // A line break would end the path's line in mosquitto.conf and start another.
      for (const [option, path] of [
        ['--out', dir],
        ['--data-dir', dataDir],
      ] as const) {
        if (/[\r\n]/.test(path)) {
          throw new BoardfleetError(
            'invalid-option',
            `${option} ${JSON.stringify(path)}: mosquitto.conf cannot hold a path with a line break`,
          );
        }
      }
      const files = [MOSQUITTO_CONF_FILE, DYNSEC_STATE_FILE, BOARDFLEET_ENV_FILE];
      const existing = files.filter((file) => existsSync(join(dir, file)));
      if (existing.length > 0 && !options.force) {
        throw new BoardfleetError(
          'conflict',
          `${dir} already holds ${existing.join(', ')}: replacing them gives the broker new credentials ` +
            'and loses its device clients; pass --force to do that, or choose another --out',
        );
      }
      const install = findMosquitto();
      const tls = await ensureServerCertificateFiles(dataDir, tlsNamesOf(process.env), Date.now());
      const setup = newMosquittoSetup(
        dir,
        { port, plainHost: options.plainHost, tlsPort, tls, deviceCertificates: options.deviceCertificates },
        install.plugin,
      );
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeAtomically(
        join(dir, DYNSEC_STATE_FILE),
        `${JSON.stringify(initialDynsecState(setup), null, 2)}\n`,
        0o600,
      );
      writeAtomically(join(dir, BOARDFLEET_ENV_FILE), boardfleetEnv(setup), 0o600);
      writeAtomically(join(dir, MOSQUITTO_CONF_FILE), mosquittoConf(setup), 0o644);

      process.stdout.write(
        `Wrote ${join(dir, MOSQUITTO_CONF_FILE)}, ${DYNSEC_STATE_FILE} (0600) and ${BOARDFLEET_ENV_FILE} (0600, the server's credentials).\n` +
          'Next, start Mosquitto, then the server with boardfleet.env in its environment:\n' +
          `  ${shellWord(install.broker)} -c ${shellWord(join(dir, MOSQUITTO_CONF_FILE))}\n` +
          `  (set -a && . ${shellWord(join(dir, BOARDFLEET_ENV_FILE))} && npx boardfleet server)\n` +
          `Devices connect to Mosquitto over TLS on port ${tlsPort}, where it presents the server certificate in ${dataDir}/tls: ` +
          `run the server with that data folder (BOARDFLEET_DATA_DIR); it renews the certificate and has Mosquitto read it again.\n` +
          (tls.created
            ? `No server had run with that folder: it now holds a new fleet CA (ca.pem, ca.key) and that certificate, which the server takes at its first start.\n`
            : ''),
      );
      if (!isLoopback(options.plainHost))
        process.stderr.write(
          `warning: the plain listener on ${options.plainHost}:${port} is open to the network: device secrets sent to it travel in clear\n`,
        );
      if (await somethingListens(port)) {
        process.stderr.write(
          `warning: something already listens on port ${port} (Debian's mosquitto service starts on 1883): ` +
            'stop it (sudo systemctl disable --now mosquitto) or run this again with another --port and --force\n',
        );
      }
    });
}

interface BrokerConfigOptions {
  out: string;
  port: string;
  plainHost: string;
  tlsPort: string;
  deviceCertificates: string;
  dataDir: string;
  force?: boolean;
}

function portNumber(option: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BoardfleetError('invalid-option', `${option} ${value}: expected a port number from 1 to 65535`);
  }
  return port;
}

const isLoopback = (address: string) => address === '::1' || address.startsWith('127.');

/** Written whole under a temporary name with its mode from the start, so a secret is never readable by others. */
function writeAtomically(path: string, content: string, mode: number): void {
  const temporary = `${path}.tmp-${process.pid}`;
  try {
    writeFileSync(temporary, content, { mode, flag: 'wx' });
    chmodSync(temporary, mode);
    renameSync(temporary, path);
  } finally {
    rmSync(temporary, { force: true });
  }
}

/** A path as one shell word, quoted only when it needs to be. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}

function somethingListens(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 1_000 });
    const answer = (listens: boolean) => {
      socket.destroy();
      resolvePromise(listens);
    };
    socket.once('connect', () => answer(true));
    socket.once('timeout', () => answer(false));
    socket.once('error', () => answer(false));
  });
}
