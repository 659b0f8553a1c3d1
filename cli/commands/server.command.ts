import type { Command } from 'commander';
import { loadServerConfig } from '../../server/config/config.ts';

export function register(program: Command): void {
  program
    .command('server')
    .description(
      'Run the Boardfleet server (REST API, embedded MQTT broker, database) — configured by environment variables',
    )
    .action(async () => {
      const { startServer } = await import('../../server/boardfleet-server.ts');
      const server = await startServer(loadServerConfig());
      process.stdout.write(
        `Boardfleet server: ${server.httpUrl} (API docs ${server.httpUrl}/api/docs), MQTT ${server.mqttUrl}\n` +
          `Operator token: ${server.adminTokenPath}\n`,
      );
      let stopping = false;
      const shutdown = () => {
        if (stopping) return;
        stopping = true;
        void server.stop().then(() => process.exit(0));
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    });
}
