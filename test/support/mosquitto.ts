import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { eventually } from './test-server.ts';

/** Debian's Mosquitto run from a configuration file, as `mosquitto -c FILE` runs it. */
export interface MosquittoBroker {
  url: string;
  port: number;
  /** What Mosquitto logged so far (stdout and stderr). */
  output(): string;
  /** Stops it (SIGTERM, so it saves its persistence file) and starts it again on the same file. */
  restart(): Promise<void>;
  /** Stops it; SIGKILL if it has not gone within 10 s. Safe to call twice. */
  stop(): Promise<void>;
  /** The running broker's process id (for /proc figures in benchmarks). */
  pid(): number | undefined;
}

const MOSQUITTO = '/usr/sbin/mosquitto';

/**
 * Starts Mosquitto from `configFile` and resolves once its listener (the `listener PORT` line)
 * accepts connections. Mosquitto runs on after a plugin fails to load its state, refusing every
 * client, so an `Error` line in its log fails the start as well.
 */
export async function startMosquittoFromConfig(
  configFile: string,
  { startTimeoutMs = 30_000 } = {},
): Promise<MosquittoBroker> {
  const listener = /^listener (\d+)/m.exec(readFileSync(configFile, 'utf8'));
  if (!listener?.[1]) throw new Error(`${configFile} has no "listener PORT" line`);
  const port = Number(listener[1]);
  let child: ChildProcess | undefined;
  let output = '';

  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, 'exit');
    running.kill('SIGTERM');
    const killer = setTimeout(() => running.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  };

  const start = async () => {
    const started = spawn(MOSQUITTO, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    let failure: Error | undefined;
    started.on('error', (error) => (failure ??= error));
    started.once('exit', (code, signal) => (failure ??= new Error(`mosquitto exited (${code ?? signal})`)));
    started.stdout?.on('data', (data: Buffer) => (output += data.toString()));
    started.stderr?.on('data', (data: Buffer) => (output += data.toString()));
    try {
      await eventually(
        `mosquitto listening on ${port}`,
        async () => failure !== undefined || accepts(port),
        startTimeoutMs,
      );
      if (failure) throw failure;
      const errors = output.split('\n').filter((line) => /\bError\b/.test(line));
      if (errors.length > 0) throw new Error(errors.join('\n'));
    } catch (error) {
      await stop();
      throw new Error(`mosquitto -c ${configFile} did not start: ${String(error)}\n${output}`);
    }
  };

  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    output: () => output,
    async restart() {
      await stop();
      await start();
    },
    stop,
    pid: () => child?.pid,
  };
}

/** Whether something accepts TCP connections on the local port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
