import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import pino from 'pino';
import type { CreatedProvisioningToken } from '../../protocol/api/provisioning.ts';
import { ApiClient } from '../api-client.ts';
import { progressBar } from '../progress.ts';

export function register(program: Command): void {
  program
    .command('simulate')
    .description(
      'Run N simulated devices in this process: the real agent code over MQTT, with synthetic health',
    )
    .option('--devices <n>', 'how many', '10')
    .option('--prefix <name>', 'device names are PREFIX-0001…', 'sim')
    .option('--board <board>', 'board the devices report', 'rpi-4b')
    .option('--tag <tag>', 'tag for newly provisioned devices', 'simulated')
    .option('--heartbeat <seconds>', 'health report interval', '10')
    .option('--data-dir <dir>', 'their credentials and state (reused on the next run)', './sim-data')
    .option(
      '--provisioning-token-file <path>',
      'register with the token in this file, or BOARDFLEET_PROVISIONING_TOKEN (default: one is created with the operator token)',
    )
    .action(
      async (options: {
        devices: string;
        prefix: string;
        board: string;
        tag: string;
        heartbeat: string;
        dataDir: string;
        provisioningTokenFile?: string;
      }) => {
        const { DeviceAgent } = await import('../../device-agent/runtime/device-agent.ts');
        const { SimulatedConfig, SimulatedUpdates, SyntheticCollectors } =
          await import('../../device-agent/runtime/simulated-device.ts');
        const { fetchMqttUrl, loadCredentials, provisionDevice, saveCredentials } =
          await import('../../device-agent/lib/credentials.ts');
        const count = Number(options.devices);
        const api = ApiClient.fromEnvironment();
        const version = (
          JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
            version: string;
          }
        ).version;
        const { readSecretFiles } = await import('../../device-agent/agent-config.ts');
        // Never a flag of its own: a command line shows in `ps` to every user.
        let token = readSecretFiles(
          {
            provisioningToken: options.provisioningTokenFile
              ? undefined
              : process.env.BOARDFLEET_PROVISIONING_TOKEN,
            provisioningTokenFile: options.provisioningTokenFile,
          },
          'the flags',
        ).provisioningToken as string | undefined;
        const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' });
        const agents: InstanceType<typeof DeviceAgent>[] = [];
        const progress = progressBar('starting devices', count, 'items');
        for (let index = 1; index <= count; index++) {
          const name = `${options.prefix}-${String(index).padStart(4, '0')}`;
          const dataDir = resolve(options.dataDir, name);
          mkdirSync(dataDir, { recursive: true });
          let credentials = loadCredentials(dataDir);
          if (!credentials) {
            token ??= (
              await api.request<CreatedProvisioningToken>('POST', '/api/v1/provisioning-tokens', {
                name: 'boardfleet simulate',
              })
            ).token;
            // Simulated devices send no certificate request: they cannot join fleets that require one.
            ({ credentials } = await provisionDevice({
              fetch,
              serverUrl: api.baseUrl,
              provisioningToken: token,
              name,
              board: options.board,
              tags: [options.tag],
            }));
            saveCredentials(dataDir, credentials);
          }
          const device = { deviceId: credentials.deviceId, secret: credentials.secret };
          let agent: InstanceType<typeof DeviceAgent> | null = null;
          const updates = new SimulatedUpdates({
            dataDir: join(dataDir, 'downloads'),
            serverUrl: api.baseUrl,
            auth: { deviceId: credentials.deviceId, secret: credentials.secret },
            fleetPublicKeyPem: credentials.fleetPublicKeyPem,
            report: ({ deploymentId, state, progress, reason }) =>
              agent?.recordEvent(
                'deployment',
                { state, ...(progress !== undefined ? { progress } : {}) },
                { deploymentId, ...(reason ? { message: reason } : {}) },
              ),
          });
          mkdirSync(join(dataDir, 'downloads'), { recursive: true });
          const config = new SimulatedConfig(dataDir, logger);
          agent = new DeviceAgent({
            deviceId: credentials.deviceId,
            secret: credentials.secret,
            mqttUrls: [credentials.mqttUrl],
            // As the agent does: a broker refusing the device (the fleet moved to Mosquitto) is
            // told about it by the server when the device asks it where the broker is.
            locateBroker: () => fetchMqttUrl(fetch, api.baseUrl, device),
            dataDir,
            heartbeatSeconds: Number(options.heartbeat),
            keepaliveSeconds: 30,
            collectors: new SyntheticCollectors(name, options.board, version),
            logger,
            updates,
            appliedConfigHash: config.appliedConfigHash,
          });
          config.follow(agent);
          agent.start();
          agents.push(agent);
          progress.update(index);
        }
        progress.stop();
        process.stdout.write(
          `${count} simulated devices running against ${api.baseUrl}; Ctrl-C stops them (they go offline cleanly).\n`,
        );
        const shutdown = () => {
          void Promise.all(agents.map((agent) => agent.stop())).then(() => process.exit(0));
        };
        process.once('SIGINT', shutdown);
        process.once('SIGTERM', shutdown);
      },
    );
}
