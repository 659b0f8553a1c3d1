import { startServer } from './boardfleet-server.ts';
import { loadServerConfig } from './config/config.ts';

/**
 * The server as a process: configuration from the environment, the server started, its
 * addresses printed, and a clean stop on SIGINT or SIGTERM. `boardfleet server` calls this.
 */
export async function startServerProcess(): Promise<void> {
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
}
