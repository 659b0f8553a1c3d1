// `npm run bench -- fleet [--devices 1000] [--interval-ms 1000] [--duration-s 20] [--broker embedded|mosquitto]
//   [--replicas 1] [--database sqlite|postgresql] [--mosquitto-clients register|seed] [--tls]`
// --tls (embedded broker): the server is run twice, devices on plain MQTT and on MQTT over TLS
// (verifying the fleet CA), so that TLS's cost shows beside the same run's plain figures.
// N simulated devices heartbeat through the Boardfleet server (auth, ACLs, validation, storage),
// run as one or more server processes (bench-replicas.ts; more than one needs Mosquitto and
// PostgreSQL, the default database then); then the same clients against the bare broker with no
// server logic, as the baseline. embedded: the server's Aedes, and a bare Aedes as the baseline.
// mosquitto: /usr/sbin/mosquitto configured as `boardfleet broker-config mosquitto` does, each
// device given its dynamic-security client (registered, or seeded above 1,000 devices: see
// bench-args.ts); the baseline is the same Mosquitto (same configuration and clients, restarted)
// delivering the heartbeats to one subscriber.
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  type BenchMosquitto,
  BROKER_ENV_VARIABLE,
  SEEDED_CLIENTS_VARIABLE,
  startBenchMosquitto,
} from './bench-mosquitto.ts';
import { BENCH_DEVICE_SECRET, benchDeviceIds } from './bench-server.ts';
import { describeServerSide, parseServerSide, serverSideOptions } from './bench-args.ts';
import type { FleetTarget, RunResult, ServerSide } from './fleet-target.ts';
import { percentile } from './stats.ts';

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      devices: { type: 'string', default: '1000' },
      'interval-ms': { type: 'string', default: '1000' },
      'duration-s': { type: 'string', default: '20' },
      tls: { type: 'boolean', default: false },
      ...serverSideOptions,
    },
  });
  const side = parseServerSide(values, Number(values.devices));
  const { broker, seedClients } = side;
  const count = Number(values.devices);
  const intervalMs = Number(values['interval-ms']);
  const durationMs = Number(values['duration-s']) * 1000;
  const offered = (count * 1000) / intervalMs;
  process.stdout.write(
    `fleet benchmark: ${count} devices, one heartbeat each every ${intervalMs} ms (${offered.toFixed(0)}/s offered) for ${durationMs / 1000} s; ` +
      `${describeServerSide(side)}\n\n`,
  );
  const serverSide: ServerSide = { replicas: side.replicas, database: side.database };
  if (values.tls && broker !== 'embedded')
    throw new Error("--tls measures the embedded broker's MQTT over TLS: leave out --broker mosquitto");

  // Each target runs in a fresh process so its RSS is its own.
  let boardfleet: RunResult;
  let bare: RunResult;
  let brokerRss: [number, number] | null = null;
  /** Clients Mosquitto said it dropped messages for (queue past max_queued_messages), per run. */
  let brokerDropping: [string[], string[]] = [[], []];
  let overTls: RunResult | null = null;
  if (broker === 'embedded') {
    boardfleet = await runTarget('server', count, intervalMs, durationMs, serverSide);
    if (values.tls) overTls = await runTarget('server-tls', count, intervalMs, durationMs, serverSide);
    bare = await runTarget('bare-aedes', count, intervalMs, durationMs, serverSide);
  } else {
    // Room for every device, the server's session, its admin, the registering admin and the subscriber.
    const seeded = seedClients
      ? benchDeviceIds(count).map((id) => ({ id, secret: BENCH_DEVICE_SECRET }))
      : [];
    const mosquitto = await startBenchMosquitto(count + 100, seeded);
    try {
      boardfleet = await runTarget('server-mosquitto', count, intervalMs, durationMs, serverSide, {
        mosquitto,
        seedClients,
      });
      const serverRunRss = mosquitto.peakRssBytes();
      const serverRunDropping = mosquitto.droppingClients();
      // A fresh Mosquitto process, so that its peak RSS is the baseline's own; the clients stay in its state.
      await mosquitto.restart();
      bare = await runTarget('bare-mosquitto', count, intervalMs, durationMs, serverSide, { mosquitto });
      brokerRss = [serverRunRss, mosquitto.peakRssBytes()];
      brokerDropping = [serverRunDropping, mosquitto.droppingClients()];
    } finally {
      await mosquitto.dispose();
    }
  }

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
    ['received / published', receivedOfPublished, () => ''],
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
    ['server RSS (MiB)', serverRss, (a, b) => ratio(a.rssBytes, b.rssBytes)],
  ];
  const table = [
    [
      '',
      (side.replicas > 1 ? `boardfleet server × ${side.replicas}` : 'boardfleet server') +
        (broker === 'embedded' ? '' : ' + Mosquitto'),
      broker === 'embedded' ? 'bare Aedes (baseline)' : 'raw Mosquitto (baseline)',
      'ratio',
    ],
    ...rows.map(([label, value, compare]) => [
      label,
      value(boardfleet),
      value(bare),
      compare(boardfleet, bare),
    ]),
  ];
  if (overTls) {
    // Two more columns: the server over TLS, and its ratio to the same server on plain MQTT.
    const tlsRun = overTls;
    table[0]!.push('boardfleet server, MQTT over TLS', 'TLS ÷ plain');
    rows.forEach(([, value, compare], index) =>
      table[index + 1]!.push(value(tlsRun), compare(tlsRun, boardfleet)),
    );
  }
  if (brokerRss) {
    const [serverRun, baselineRun] = brokerRss;
    const register = boardfleet.registerSeconds?.toFixed(2) ?? 'seeded, not measured';
    table.splice(1, 0, ['register devices (s)', register, '-', '']);
    table.push([
      'Mosquitto RSS peak (MiB)',
      (serverRun / 2 ** 20).toFixed(0),
      (baselineRun / 2 ** 20).toFixed(0),
      ratio(serverRun, baselineRun),
    ]);
    const dropped = (clients: string[]) =>
      clients.length === 0 ? 'none' : [...new Set(clients)].slice(0, 3).join(', ');
    table.push(['Mosquitto dropped for', dropped(brokerDropping[0]), dropped(brokerDropping[1]), '']);
  }
  if (overTls)
    process.stdout.write(
      "MQTT over TLS: TLS 1.3 with the fleet CA's P-256 certificate, each client verifying it; connect\n" +
        'includes the handshake. TLS ÷ plain compares it with the plain run of the same server.\n\n',
    );
  const widths = table[0]!.map((_, column) => Math.max(...table.map((row) => row[column]!.length)));
  for (const row of table)
    process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
  process.stdout.write(
    '\nlatency: device publish → row committed (server) | → delivered to one subscriber (baseline).\n' +
      'received: stored + shed (server) | delivered (baseline).\n' +
      (broker === 'embedded'
        ? 'connect includes the check of each device secret (server) | no authentication (baseline).\n' +
          'offered: devices × duration / interval; the server pauses device sockets when its backlog is full,\n' +
          'so part of the offered load stays unsent in the clients; shed: boardfleet_mqtt_shed_total +\n' +
          'boardfleet_telemetry_dropped_total.\n'
        : 'connect: Mosquitto checks each device against its dynamic-security client, in both columns: the\n' +
          "baseline is the same configuration and state (restarted), its subscriber the server's credential.\n" +
          'register: MosquittoBroker.registerDevice for every device (a client and a role each), 10 in flight;\n' +
          'seeded: the same clients and roles written into its state file before it started.\n' +
          'offered: devices × duration / interval; shed: boardfleet_mqtt_shed_total + boardfleet_telemetry_dropped_total.\n' +
          'server RSS: each server process at the end (replicas: each, then together) | the subscriber process\n' +
          '(baseline). Mosquitto RSS: its VmHWM. dropped for: the clients Mosquitto logged it dropped messages for\n' +
          '(their queue past max_queued_messages).\n'),
  );
}

function runTarget(
  target: FleetTarget,
  count: number,
  intervalMs: number,
  durationMs: number,
  side: ServerSide,
  { mosquitto, seedClients = false }: { mosquitto?: BenchMosquitto; seedClients?: boolean } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(
      new URL('./fleet-target.ts', import.meta.url),
      [target, String(count), String(intervalMs), String(durationMs), JSON.stringify(side)],
      {
        env: {
          ...process.env,
          ...(mosquitto ? { [BROKER_ENV_VARIABLE]: JSON.stringify(mosquitto.env) } : {}),
          [SEEDED_CLIENTS_VARIABLE]: seedClients ? '1' : '0',
        },
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

/**
 * Received: stored plus shed (counted and dropped on purpose), so that received = published means
 * nothing went missing. With several replicas, how many each stored: the shared subscription's split.
 */
function receivedOfPublished(result: RunResult): string {
  const replicas = result.replicaStored ?? [];
  return (
    `${result.stored + result.shed}/${result.published}` +
    (replicas.length > 1 ? ` (stored ${replicas.join(' + ')})` : '')
  );
}

/** MiB; with several replicas each one's, then their sum. */
function serverRss(result: RunResult): string {
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  const replicas = result.replicaRssBytes ?? [];
  return replicas.length > 1
    ? `${replicas.map(mib).join(' + ')} = ${mib(result.rssBytes)}`
    : mib(result.rssBytes);
}

function ratio(a: number, b: number): string {
  return b > 0 ? `${(a / b).toFixed(2)}×` : '';
}
