import { type Command, Option } from 'commander';
import { BoardfleetError } from '../../protocol/errors.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command): void {
  program
    .command('agent')
    .description('Run the device agent: reports presence, inventory and health, and applies deployments')
    .option('--config <file>', 'JSON file with any of the options below (flags win)')
    .option('--server <url>', 'Boardfleet server, e.g. https://fleet.local:8443')
    .option(
      '--ca <file>',
      "the fleet CA (the server's data/tls/ca.pem) to verify the server by; default: the one a provisioning token pins, kept in the data dir",
    )
    .option(
      '--mqtt <url>',
      'MQTT broker (repeatable, tried in turn); default: the broker the server names, asked on every start',
      collect,
      [],
    )
    .option('--device-id <id>', 'this device (with --secret-file or BOARDFLEET_SECRET)')
    .option('--secret-file <path>', "file holding this device's secret (or BOARDFLEET_SECRET[_FILE])")
    .option(
      '--provisioning-token-file <path>',
      'file holding a fleet token to register with on the first start (or BOARDFLEET_PROVISIONING_TOKEN[_FILE])',
    )
    // Refused, with what to use instead: a command line shows in `ps` to every user.
    .addOption(new Option('--secret <secret>').hideHelp())
    .addOption(new Option('--provisioning-token <token>').hideHelp())
    .option('--name <name>', 'device name when provisioning (default: the hostname)')
    .option('--board <board>', 'board type (default: from the device tree)')
    .option('--tag <tag>', 'tag when provisioning (repeatable)', collect, [])
    .option(
      '--attached-board <board>',
      'an Arduino-class board on a serial port that takes mcu-firmware rollouts, e.g. uno',
    )
    .option('--attached-port <path>', 'serial port of the attached board, or "auto"', 'auto')
    .option('--data-dir <dir>', 'where credentials and state live', './agent-data')
    .option(
      '--force',
      'replace credentials already in the data dir (provision a new device with the token, or use the given id)',
    )
    .option('--heartbeat <seconds>', 'health report interval', '30')
    .option('--keepalive <seconds>', 'MQTT keepalive; offline after 1.5x without a word', '30')
    .action(async (options) => {
      refuseSecretsOnCommandLine(options);
      const { startAgentProcess } = await import('../../device-agent/main.ts');
      const { agentSecretsFromEnvironment, readSecretFiles } =
        await import('../../device-agent/agent-config.ts');
      await startAgentProcess(
        {
          // Read here, layer by layer, so a file flag wins over a secret in the environment.
          ...readSecretFiles(agentSecretsFromEnvironment(process.env), 'the environment'),
          ...readSecretFiles(
            { secretFile: options.secretFile, provisioningTokenFile: options.provisioningTokenFile },
            'the flags',
          ),
          server: options.server,
          ca: options.ca,
          mqtt: options.mqtt,
          deviceId: options.deviceId,
          name: options.name,
          board: options.board,
          tags: options.tag,
          attachedBoard: options.attachedBoard
            ? { board: options.attachedBoard, port: options.attachedPort }
            : undefined,
          dataDir: options.dataDir,
          force: options.force,
          heartbeat: options.heartbeat,
          keepalive: options.keepalive,
        },
        options.config,
      );
    });
}

function refuseSecretsOnCommandLine(options: { secret?: string; provisioningToken?: string }): void {
  const refused = [
    options.secret !== undefined && '--secret: use --secret-file PATH or BOARDFLEET_SECRET',
    options.provisioningToken !== undefined &&
      '--provisioning-token: use --provisioning-token-file PATH or BOARDFLEET_PROVISIONING_TOKEN',
  ].filter(Boolean);
  if (refused.length > 0)
    throw new BoardfleetError(
      'invalid-config',
      `secrets are not taken on the command line, where ps shows them to every user; ${refused.join('; ')}`,
    );
}
