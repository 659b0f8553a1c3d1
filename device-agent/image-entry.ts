/**
 * Entry of the single-file agent bundle a Linux image runs (`node agent.mjs --config … --data-dir …`).
 * It takes only what the image's init passes; everything else comes from the JSON config file,
 * whose keys are those of `boardfleet agent` (see `agentConfigSchema`).
 */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { reportCliError } from '../cli/cli-errors.ts';
import { loadAgentConfig, runAgent } from './runtime/run-agent.ts';

const USAGE = `Usage: node agent.mjs [--config FILE] [--data-dir DIR]

Runs the Boardfleet device agent.

Options:
  --config FILE    JSON file with the agent's options: server, provisioningToken, name, board,
                   tags, mqtt, heartbeat, keepalive… (the keys of \`boardfleet agent\`)
  --data-dir DIR   where credentials and state live (wins over the file's dataDir;
                   default ./agent-data)
  -h, --help       show this help

Environment (wins over the file; how a unikernel image is configured at launch):
  BOARDFLEET_SERVER, BOARDFLEET_DEVICE_ID, BOARDFLEET_SECRET, BOARDFLEET_PROVISIONING_TOKEN,
  BOARDFLEET_NAME, BOARDFLEET_BOARD (default: BOARDFLEET_IMAGE_BOARD, set by the image),
  BOARDFLEET_MQTT (comma-separated broker URLs)
`;

/** Agent options from the environment, for images configured on their kernel command line. */
function configFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  return {
    server: env.BOARDFLEET_SERVER,
    deviceId: env.BOARDFLEET_DEVICE_ID,
    secret: env.BOARDFLEET_SECRET,
    provisioningToken: env.BOARDFLEET_PROVISIONING_TOKEN,
    name: env.BOARDFLEET_NAME,
    board: env.BOARDFLEET_BOARD ?? env.BOARDFLEET_IMAGE_BOARD,
    mqtt: env.BOARDFLEET_MQTT?.split(',').filter(Boolean),
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const config = loadAgentConfig(
    { ...configFromEnvironment(process.env), dataDir: values['data-dir'] },
    values.config,
  );
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const agent = await runAgent(config, logger);
  // Says goodbye to the broker (presence goes offline at once) before the supervisor's SIGKILL.
  const shutdown = () => {
    void agent.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exitCode = 1;
    return;
  }
  process.exitCode = reportCliError(error);
});
