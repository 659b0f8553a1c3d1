import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { freePort } from './databases.ts';
import { accepts } from './mosquitto.ts';
import { eventually } from './test-server.ts';

/** A broker that is not Boardfleet's, listening on 127.0.0.1, as a device may find one. */
export interface ForeignBroker {
  url: string;
  stop(): Promise<void>;
}

/**
 * Debian's Mosquitto (the broker a maker machine often runs on 1883) on a free port, with these
 * lines added to its configuration, e.g. `allow_anonymous true`.
 */
export async function startMosquitto(configLines: string[]): Promise<ForeignBroker> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'boardfleet-mosquitto-'));
  const configFile = join(dir, 'mosquitto.conf');
  writeFileSync(
    configFile,
    [`listener ${port} 127.0.0.1`, 'persistence false', ...configLines, ''].join('\n'),
  );
  const child: ChildProcess = spawn('/usr/sbin/mosquitto', ['-c', configFile], { stdio: 'ignore' });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(`mosquitto listening on ${port}`, () => accepts(port), 15_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `mqtt://127.0.0.1:${port}`, stop };
}

/** A bare Aedes that lets anyone in and refuses every subscription (SUBACK 0x80). */
export async function startAedesRefusingSubscriptions(): Promise<ForeignBroker> {
  const aedes = await Aedes.createBroker({
    authorizeSubscribe: (_client, _subscription, done) => done(null, null),
  });
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket.once('close', () => sockets.delete(socket)));
    aedes.handle(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}
