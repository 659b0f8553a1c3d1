/**
 * Entry of the single-file agent bundle a Linux or unikernel image runs
 * (`node agent.mjs --config … --data-dir …`). It takes only what the image's init passes; the
 * rest comes from the environment and the JSON config file, whose keys are those of
 * `boardfleet agent` (see `agentConfigSchema`).
 */
import { parseArgs } from 'node:util';
import { agentFlagsFromEnvironment } from './agent-config.ts';
import { reportFatalError } from './lib/report-error.ts';
import { startAgentProcess } from './main.ts';

const USAGE = `Usage: node agent.mjs [--config FILE] [--data-dir DIR] [--force]

Runs the Boardfleet device agent.

Options:
  --config FILE    JSON file with the agent's options: server, provisioningToken (or
                   provisioningTokenFile), name, board, tags, mqtt (default: the broker the
                   server names), heartbeat, keepalive, helloTimeout… (the keys of
                   \`boardfleet agent\`)
  --data-dir DIR   where credentials and state live (wins over the file's dataDir;
                   default ./agent-data)
  --force          replace credentials already in the data dir (provision a new device with
                   the token, or use the given device id)
  -h, --help       show this help

Environment (wins over the file; how a unikernel image is configured at launch):
  BOARDFLEET_SERVER, BOARDFLEET_DEVICE_ID, BOARDFLEET_SECRET, BOARDFLEET_PROVISIONING_TOKEN
  (or BOARDFLEET_SECRET_FILE, BOARDFLEET_PROVISIONING_TOKEN_FILE: a file holding it),
  BOARDFLEET_NAME, BOARDFLEET_BOARD (default: BOARDFLEET_IMAGE_BOARD, set by the image),
  BOARDFLEET_MQTT (comma-separated broker URLs),
  LOG_LEVEL (trace, debug, info, warn, error, fatal or silent; default info),
  LOG_FORMAT (json or pretty; default json: an image's console is read by programs)
`;

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      force: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  await startAgentProcess(
    {
      ...agentFlagsFromEnvironment(process.env),
      // A VM's console is a terminal, yet what reads it (the host's log, `boardfleet vm`) wants JSON.
      logFormat: process.env.LOG_FORMAT || 'json',
      dataDir: values['data-dir'],
      force: values.force,
    },
    values.config,
  );
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exitCode = 1;
    return;
  }
  process.exitCode = reportFatalError(error);
});
