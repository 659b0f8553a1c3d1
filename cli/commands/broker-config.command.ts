import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
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

export function register(program: Command): void {
  const brokerConfig = program
    .command('broker-config')
    .description('Configure an external MQTT broker for the server (instead of its embedded one)')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet broker-config mosquitto --out ./mosquitto
  boardfleet broker-config mosquitto --out /srv/boardfleet/mosquitto --port 1884`,
    );

  brokerConfig
    .command('mosquitto')
    .description(
      "Write mosquitto.conf (listener, dynamic-security plugin, persistence, limits), the plugin's first state and boardfleet.env (the server's variables) into the --out folder",
    )
    .requiredOption('--out <dir>', 'folder for the configuration, the credentials and the persistence file')
    .option('--port <port>', 'port Mosquitto listens on', '1883')
    .option(
      '--force',
      "replace an earlier run's files: new credentials, and every device client they held is gone",
    )
    .action(async (options: { out: string; port: string; force?: boolean }) => {
      const port = portNumber(options.port);
      const dir = resolve(options.out);
      // A line break would end the path's line in mosquitto.conf and start another.
      if (/[\r\n]/.test(dir)) {
        throw new BoardfleetError(
          'invalid-option',
          `--out ${JSON.stringify(dir)}: mosquitto.conf cannot hold a path with a line break`,
        );
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
      const setup = newMosquittoSetup(dir, port, install.plugin);
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
          `  (set -a && . ${shellWord(join(dir, BOARDFLEET_ENV_FILE))} && npx boardfleet server)\n`,
      );
      if (await somethingListens(port)) {
        process.stderr.write(
          `warning: something already listens on port ${port} (Debian's mosquitto service starts on 1883): ` +
            'stop it (sudo systemctl disable --now mosquitto) or run this again with another --port and --force\n',
        );
      }
    });
}

function portNumber(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new BoardfleetError('invalid-option', `--port ${value}: expected a port number from 1 to 65535`);
  }
  return port;
}

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
