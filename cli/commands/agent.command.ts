import type { Command } from 'commander';

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command): void {
  program
    .command('agent')
    .description('Run the device agent: reports presence, inventory and health, and applies deployments')
    .option('--config <file>', 'JSON file with any of the options below (flags win)')
    .option('--server <url>', 'Boardfleet server, e.g. http://fleet.local:8080')
    .option(
      '--mqtt <url>',
      'MQTT broker (repeatable, tried in turn); default from provisioning or the server host',
      collect,
      [],
    )
    .option('--device-id <id>', 'this device (with --secret)')
    .option('--secret <secret>', "this device's secret")
    .option('--provisioning-token <token>', 'register with this fleet token on the first start')
    .option('--name <name>', 'device name when provisioning (default: the hostname)')
    .option('--board <board>', 'board type (default: from the device tree)')
    .option('--tag <tag>', 'tag when provisioning (repeatable)', collect, [])
    .option(
      '--attached-board <board>',
      'an Arduino-class board on a serial port that takes mcu-firmware rollouts, e.g. uno',
    )
    .option('--attached-port <path>', 'serial port of the attached board, or "auto"', 'auto')
    .option('--data-dir <dir>', 'where credentials and state live', './agent-data')
    .option('--heartbeat <seconds>', 'health report interval', '30')
    .option('--keepalive <seconds>', 'MQTT keepalive; offline after 1.5x without a word', '30')
    .action(async (options) => {
      const { startAgentProcess } = await import('../../device-agent/main.ts');
      await startAgentProcess(
        {
          server: options.server,
          mqtt: options.mqtt,
          deviceId: options.deviceId,
          secret: options.secret,
          provisioningToken: options.provisioningToken,
          name: options.name,
          board: options.board,
          tags: options.tag,
          attachedBoard: options.attachedBoard
            ? { board: options.attachedBoard, port: options.attachedPort }
            : undefined,
          dataDir: options.dataDir,
          heartbeat: options.heartbeat,
          keepalive: options.keepalive,
        },
        options.config,
      );
    });
}
