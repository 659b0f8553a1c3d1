// `npm run bench -- fleet [--devices 1000] [--interval-ms 1000] [--duration-s 20]`
// N simulated devices heartbeat through the Boardfleet server (auth, ACLs, validation, SQLite
// storage); then the same clients against a bare Aedes with no server logic, as the baseline.
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { RunResult } from './fleet-target.ts';
import { percentile } from './stats.ts';

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: 'string', default: '1000' },
      'interval-ms': { type: 'string', default: '1000' },
      'duration-s': { type: 'string', default: '20' },
    },
  });
  const count = Number(values.devices);
  const intervalMs = Number(values['interval-ms']);
  const durationMs = Number(values['duration-s']) * 1000;
  const offered = (count * 1000) / intervalMs;
  process.stdout.write(
    `fleet benchmark: ${count} devices, one heartbeat each every ${intervalMs} ms (${offered.toFixed(0)}/s offered) for ${durationMs / 1000} s\n\n`,
  );

  // Each target runs in a fresh process so its RSS is its own.
  const boardfleet = await runTarget('server', count, intervalMs, durationMs);
  const bare = await runTarget('bare-aedes', count, intervalMs, durationMs);

  const rows: Array<[string, (r: RunResult) => string, (a: RunResult, b: RunResult) => string]> = [
    [
      'connect all (s)',
      (r) => r.connectSeconds.toFixed(2),
      (a, b) => ratio(a.connectSeconds, b.connectSeconds),
    ],
    [
      'heartbeats/s stored|delivered',
      (r) => r.storedPerSecond.toFixed(0),
      (a, b) => ratio(a.storedPerSecond, b.storedPerSecond),
    ],
    ['received / published', (r) => `${r.stored}/${r.published}`, () => ''],
    [
      'stored / offered',
      (r) => `${r.stored}/${r.offered} (${((100 * r.stored) / (r.offered || 1)).toFixed(0)} %)`,
      () => '',
    ],
    ['shed (counted)', (r) => String(r.shed), () => ''],
    ['alive at the end', (r) => (r.alive ? 'yes' : 'NO'), () => ''],
    [
      'latency p50 (ms)',
      (r) => percentile(r.latencies, 50).toFixed(1),
      (a, b) => ratio(percentile(a.latencies, 50), percentile(b.latencies, 50)),
    ],
    [
      'latency p99 (ms)',
      (r) => percentile(r.latencies, 99).toFixed(1),
      (a, b) => ratio(percentile(a.latencies, 99), percentile(b.latencies, 99)),
    ],
    ['server RSS (MiB)', (r) => (r.rssBytes / 2 ** 20).toFixed(0), (a, b) => ratio(a.rssBytes, b.rssBytes)],
  ];
  const table = [
    ['', 'boardfleet server', 'bare Aedes (baseline)', 'ratio'],
    ...rows.map(([label, value, compare]) => [
      label,
      value(boardfleet),
      value(bare),
      compare(boardfleet, bare),
    ]),
  ];
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table)
    process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
  process.stdout.write(
    '\nlatency: device publish → row committed (server) | → delivered to one subscriber (baseline).\n' +
      'connect includes the check of each device secret (server) | no authentication (baseline).\n' +
      'offered: devices × duration / interval; the server pauses device sockets when its backlog is full,\n' +
      'so part of the offered load stays unsent in the clients; shed: boardfleet_mqtt_shed_total +\n' +
      'boardfleet_telemetry_dropped_total.\n',
  );
}

function runTarget(
  target: 'server' | 'bare-aedes',
  count: number,
  intervalMs: number,
  durationMs: number,
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(
      new URL('./fleet-target.ts', import.meta.url),
      [target, String(count), String(intervalMs), String(durationMs)],
      {
        execArgv: ['--import', 'tsx'],
        stdio: 'inherit',
      },
    );
    child.once('message', (result) => resolve(result as RunResult));
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`fleet benchmark target ${target} exited with ${code}`));
    });
  });
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : '';
}
