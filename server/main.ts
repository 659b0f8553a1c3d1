import { isAbsolute, relative } from 'node:path';
import { startServer } from './boardfleet-server.ts';
import { loadServerConfig } from './config/config.ts';

/**
 * The server as a process: configuration from the environment, the server started, its
 * addresses printed, and a clean stop on SIGINT or SIGTERM. `boardfleet server` calls this.
 */
export async function startServerProcess(): Promise<void> {
  const server = await startServer(loadServerConfig());
  // The README's addresses: on this machine, 127.0.0.1 is localhost.
  const local = (url: string) => url.replace('//127.0.0.1:', '//localhost:');
  process.stdout.write(
    `Boardfleet server: ${local(server.httpUrl)} (API docs ${local(server.httpUrl)}/api/docs), MQTT ${local(server.mqttUrl)}\n` +
      `Over TLS: ${server.httpsUrl}${server.mqttsUrl ? `, MQTT ${server.mqttsUrl}` : ''} (fleet CA ${shortPath(server.caPath)})\n` +
      `Fleet CA fingerprint (sha256, what provisioning tokens pin): ${server.caFingerprint}\n` +
      `Operator token: ${shortPath(server.adminTokenPath)}\n`,
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

/** `./data/admin.token` for a file below the working directory, as the README shows; else the full path. */
function shortPath(path: string): string {
  const below = relative(process.cwd(), path);
  return below.startsWith('..') || isAbsolute(below) ? path : `./${below}`;
}
