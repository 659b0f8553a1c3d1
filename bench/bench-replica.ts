// One Boardfleet server replica of a benchmark: its own process, configured from its environment
// as `boardfleet server` is (server/main.ts), answering the bench's requests over IPC: register the
// bench devices, collect heartbeat figures, report CPU and memory, stop.
import { readFileSync } from 'node:fs';
import pino from 'pino';
import type { Counter } from 'prom-client';
import { startServer } from '../server/boardfleet-server.ts';
import { loadServerConfig } from '../server/config/config.ts';
import { registerBenchDevices } from './bench-server.ts';
import type { ReplicaMessage, ReplicaReply, ReplicaRequest } from './bench-replicas.ts';

const server = await startServer(loadServerConfig(), { logger: pino({ level: 'warn' }) });

/** Heartbeats committed since the last 'measure': how many, when the first and last batch committed, latencies. */
let stored = 0;
let firstStoredAt = 0;
let lastStoredAt = 0;
let latencies: number[] = [];
let measuring = false;
server.ingest.on('health-stored', (samples) => {
  if (!measuring) return;
  const storedAt = Date.now();
  firstStoredAt ||= storedAt;
  lastStoredAt = storedAt;
  stored += samples.length;
  for (const sample of samples) latencies.push(storedAt - sample.health.at);
});

async function counterTotal(counter: Counter<string>): Promise<number> {
  return (await counter.get()).values.reduce((total, sample) => total + sample.value, 0);
}

/** The peak resident set so far (VmHWM), in bytes. */
function peakRssBytes(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  return Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
}

async function answer(request: ReplicaRequest): Promise<ReplicaReply> {
  switch (request.type) {
    case 'register':
      await registerBenchDevices(server, request.count, request.board);
      return { type: 'register' };
    case 'measure':
      measuring = true;
      stored = firstStoredAt = lastStoredAt = 0;
      latencies = [];
      return { type: 'measure' };
    case 'report': {
      await server.ingest.drain();
      const cpu = process.cpuUsage();
      return {
        type: 'report',
        stored,
        firstStoredAt,
        lastStoredAt,
        latencies,
        shed:
          (await counterTotal(server.metrics.mqttShed)) +
          (await counterTotal(server.metrics.telemetryDropped)),
        rssBytes: process.memoryUsage().rss,
        peakRssBytes: peakRssBytes(),
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
      };
    }
    case 'stop':
      await server.stop();
      return { type: 'stop' };
  }
}

const send = (message: ReplicaMessage, then: () => void = () => undefined) =>
  process.send?.(message, undefined, undefined, then);

process.on('message', (message: { id: number; request: ReplicaRequest }) => {
  answer(message.request).then(
    (reply) => send({ id: message.id, reply }, () => reply.type === 'stop' && process.exit(0)),
    (error: unknown) => send({ id: message.id, error: String(error) }),
  );
});
// The parent gone (a crashed bench), nothing is left to serve.
process.on('disconnect', () => void server.stop().finally(() => process.exit(1)));
send({
  ready: {
    httpUrl: server.httpUrl,
    mqttUrl: server.mqttUrl,
    mqttsUrl: server.mqttsPort === null ? null : `mqtts://127.0.0.1:${server.mqttsPort}`,
    caPem: server.caPem,
    adminToken: server.adminToken,
  },
});
