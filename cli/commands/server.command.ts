import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('server')
    .description(
      'Run the Boardfleet server (REST API, embedded MQTT broker, database) — configured by environment variables',
    )
    .action(async () => {
      // The server program's own entry, loaded only for this command: the CLI knows nothing else of it.
      const { startServerProcess } = await import('../../server/main.ts');
      await startServerProcess();
    });
}
