// `npm run bench -- rollout [--devices 1000] [--broker embedded|mosquitto] [--replicas 1]
//   [--database sqlite|postgresql] [--mosquitto-clients register|seed]`
// N simulated devices (real agent code, simulated installs that really download and verify) take
// a small bundle in 3 waves with zero soak, through the Boardfleet server — one or more server
// processes (bench-replicas.ts); baseline: a raw broker round-trip to the same N clients (a bare
// Aedes, or the same Mosquitto with the devices' own clients).
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import type { RolloutList, RolloutStatus } from '../protocol/api/rollouts.ts';
import { MOSQUITTO_ENVIRONMENT } from '../server/broker/mosquitto/mosquitto-config.ts';
import { openDatabase } from '../server/db/database.ts';
import { NOTIFY_PART_SIZE } from '../server/rollouts/rollout-steps.ts';
import { sha256 } from '../lib/hash.ts';
import { describeServerSide, parseServerSide, type ServerSideArgs, serverSideOptions } from './bench-args.ts';
import { type BenchMosquitto, registerInMosquitto, startBenchMosquitto } from './bench-mosquitto.ts';
import { type BenchReplicas, startBenchReplicas } from './bench-replicas.ts';
import { BENCH_DEVICE_SECRET, benchDeviceIds } from './bench-server.ts';
import { bareAedesRoundTrip, brokerRoundTrip, type RoundTrip } from './rollout-baseline.ts';
import type { RolloutDevicesMessage, RolloutDevicesPlan } from './rollout-devices.ts';
import { percentile } from './stats.ts';

/** How often the rollout's state is asked for while it runs (the list, not the 10,000-device status). */
const POLL_MS = 500;
/** Tries of an operator's GET whose connection broke. */
const GET_ATTEMPTS = 3;
/** The simulated devices connect within this, or the benchmark stops. */
const ONLINE_DEADLINE_MS = 5 * 60_000;
/** A rollout still running after this is reported as it stands. */
const ROLLOUT_DEADLINE_MS = 15 * 60_000;

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { devices: { type: 'string', default: '1000' }, ...serverSideOptions },
  });
  const side = parseServerSide(values, Number(values.devices));
  const count = Number(values.devices);
  process.stdout.write(
    `rollout benchmark: ${count} simulated devices, 3 waves (1% → 10% → 100%), soak 0; ${describeServerSide(side)}\n\n`,
  );
  const devices = benchDeviceIds(count).map((id) => ({ id, secret: BENCH_DEVICE_SECRET }));
  let server: RolloutFigures;
  let baseline: RoundTrip;
  /** Mosquitto's notices of clients it dropped messages for, during the rollout and the baseline. */
  const dropping: [string[], string[]] = [[], []];
  if (side.broker === 'embedded') {
    server = await measureRollout(devices, side, null);
    baseline = await bareAedesRoundTrip(devices);
  } else {
    // Room for every device, each replica's session, the admins and the baseline's publisher.
    const mosquitto = await startBenchMosquitto(count + 100, side.seedClients ? devices : []);
    try {
      server = await measureRollout(devices, side, mosquitto);
      dropping[0] = mosquitto.droppingClients();
      const env = MOSQUITTO_ENVIRONMENT;
      baseline = await brokerRoundTrip(mosquitto.url, devices, {
        username: mosquitto.env[env.serverUsername]!,
        password: mosquitto.env[env.serverPassword]!,
      });
      dropping[1] = mosquitto.droppingClients();
    } finally {
      await mosquitto.dispose();
    }
  }
  const perReplica = (values: number[], digits: number) =>
    values.length > 1
      ? `${values.map((value) => value.toFixed(digits)).join(' + ')} = ${sum(values).toFixed(digits)}`
      : sum(values).toFixed(digits);
  const rows: Array<[string, string, string]> = [
    ['notify fan-out p50 (ms)', server.fanoutP50.toFixed(0), baseline.p50.toFixed(1)],
    ['notify fan-out p99 (ms)', server.fanoutP99.toFixed(0), baseline.p99.toFixed(1)],
    ['server part p50 (ms)', server.publishedP50.toFixed(0), ''],
    ['server part p99 (ms)', server.publishedP99.toFixed(0), ''],
    ['all done (s)', server.totalSeconds.toFixed(2), (baseline.totalMs / 1000).toFixed(3)],
    ['committed | replies', `${server.committed}/${count}`, `${baseline.replies}/${count}`],
    ['server CPU (s)', perReplica(server.cpuSeconds, 2), ''],
    [
      'server RSS (MiB)',
      perReplica(
        server.rssBytes.map((bytes) => bytes / 2 ** 20),
        0,
      ),
      '',
    ],
  ];
  const broker = side.broker === 'embedded' ? 'bare Aedes' : 'Mosquitto';
  process.stdout.write(
    `${'figure'.padEnd(26)}${'boardfleet rollout'.padEnd(22)}raw ${broker} round-trip (baseline)\n`,
  );
  for (const [label, a, b] of rows) process.stdout.write(`${label.padEnd(26)}${a.padEnd(22)}${b}\n`);
  const droppedNote = (phase: string, clients: string[]) =>
    clients.length > 0
      ? `Mosquitto dropped messages (queue past max_queued_messages) during the ${phase} for ${clients.length} client(s): ` +
        `${[...new Set(clients)].slice(0, 5).join(', ')}\n`
      : '';
  process.stdout.write(
    `\nfan-out: wave start → device received its desired state (waves start one after another, so the\n` +
      `later waves' figures include the earlier waves). baseline: one publish to each of ${count} device\n` +
      `topics on ${side.broker === 'embedded' ? 'a bare Aedes' : 'the same Mosquitto, each device its own client'} → each client's reply received.\n` +
      `server part: wave start → the broker acknowledged the desired state (published_at, recorded\n` +
      `per part of up to ${NOTIFY_PART_SIZE} devices); the rest is the broker and the simulated devices, on the same cores.\n` +
      `server CPU and RSS: during the rollout and at its end${side.replicas > 1 ? ', each replica, then together' : ''}.\n` +
      (side.replicas > 1
        ? 'devices download from the replicas in turn; the operator talks to the first.\n'
        : '') +
      (server.state === 'completed'
        ? ''
        : `the rollout ended ${server.state}: ${server.reason ?? 'no reason given'}\n`) +
      server.failures.map(([reason, devices]) => `failed: ${devices} × ${reason}\n`).join('') +
      droppedNote('rollout', dropping[0]) +
      droppedNote('baseline', dropping[1]) +
      `committed: ${server.committed}/${count}.\n`,
  );
}

interface RolloutFigures {
  /** How the rollout ended (completed; paused when a wave tripped), or still running at the deadline. */
  state: string;
  reason: string | null;
  /** The most frequent reasons devices failed, with their counts. */
  failures: Array<[reason: string, devices: number]>;
  fanoutP50: number;
  fanoutP99: number;
  /** Wave start → the broker acknowledged the device's desired state, as the server recorded it. */
  publishedP50: number;
  publishedP99: number;
  totalSeconds: number;
  cpuSeconds: number[];
  rssBytes: number[];
  committed: number;
}

async function measureRollout(
  list: Array<{ id: string; secret: string }>,
  side: ServerSideArgs,
  mosquitto: BenchMosquitto | null,
): Promise<RolloutFigures> {
  const count = list.length;
  const servers = await startBenchReplicas({
    count: side.replicas,
    database: side.database,
    // Embedded: room for every device beside the server's own session (the default cap is 10,000).
    env: mosquitto?.env ?? { BOARDFLEET_MQTT_MAX_CONNECTIONS: String(Math.max(10_000, count + 100)) },
  });
  let devices: ChildProcess | null = null;
  try {
    const [operator] = servers.replicas;
    const api = apiOf(operator!.httpUrl, operator!.adminToken);
    const bundle = randomBytes(16 * 1024);
    const query = new URLSearchParams({
      name: 'bench-app',
      version: '1.0.0',
      kind: 'app-bundle',
      boards: 'rpi-4b',
      sha256: sha256(bundle),
      size: String(bundle.length),
    });
    const artifact = await api<{ id: string }>('POST', `/api/v1/artifacts?${query}`, bundle);
    await api('POST', '/api/v1/releases', { name: 'bench', artifacts: { 'rpi-4b': artifact.id } });
    await servers.registerDevices(count, 'rpi-4b');
    if (mosquitto && !side.seedClients) await registerInMosquitto(mosquitto.env, list);
    const { publicKeyPem } = await api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key');
    const setupStarted = Date.now();
    devices = fork(new URL('./rollout-devices.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'] });
    const online = once(devices, 'message');
    devices.send({
      serverUrls: servers.replicas.map((replica) => replica.httpUrl),
      mqttUrl: mosquitto?.url ?? operator!.mqttUrl,
      fleetPublicKeyPem: publicKeyPem,
      devices: list,
    } satisfies RolloutDevicesPlan);
    await withDeadline(online, ONLINE_DEADLINE_MS, `${count} simulated devices online`);
    process.stdout.write(
      `  ${count} simulated devices online in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s\n`,
    );
    // Their presence and inventories stored before the rollout starts.
    const before = await reportAll(servers);

    const started = Date.now();
    const waves = [1, 10, 100].map((percent) => ({
      percent,
      soakSeconds: 0,
      maxParallel: count,
      errorThresholdPercent: 0,
    }));
    const rollout = await api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: 'bench',
      target: { boards: ['rpi-4b'] },
      waves,
    });
    // Until it is no longer running (completed, or paused by a tripped wave), or the deadline.
    while (
      Date.now() - started < ROLLOUT_DEADLINE_MS &&
      (await api<RolloutList>('GET', '/api/v1/rollouts')).rollouts.some(
        (summary) => summary.id === rollout.id && summary.state === 'running',
      )
    )
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    const totalSeconds = (Date.now() - started) / 1000;
    const after = await reportAll(servers);
    const status = await api<RolloutStatus>('GET', `/api/v1/rollouts/${rollout.id}`);
    devices.send({ type: 'report' });
    const [report] = (await once(devices, 'message')) as [
      Extract<RolloutDevicesMessage, { type: 'notified' }>,
    ];
    const fanout = status.devices
      .map(
        (device) =>
          (report.at[device.deviceId] ?? Number.NaN) -
          (status.waves[device.waveIndex]?.startedAt ?? Number.NaN),
      )
      .filter((ms) => Number.isFinite(ms));
    const published = await publishedAfterWaveStart(servers.databaseUrl, status);
    return {
      fanoutP50: percentile(fanout, 50),
      fanoutP99: percentile(fanout, 99),
      publishedP50: percentile(published, 50),
      publishedP99: percentile(published, 99),
      totalSeconds,
      cpuSeconds: after.map((figures, i) => figures.cpuSeconds - before[i]!.cpuSeconds),
      rssBytes: after.map((figures) => figures.rssBytes),
      committed: status.devices.filter((device) => device.state === 'committed').length,
      state: status.state,
      reason: status.reason,
      failures: failureReasons(status),
    };
  } finally {
    if (devices) {
      devices.send({ type: 'stop' });
      await once(devices, 'exit');
    }
    await servers.dispose();
  }
}

/** Per device: wave start → its desired state acknowledged by the broker, read from the database. */
async function publishedAfterWaveStart(databaseUrl: string, status: RolloutStatus): Promise<number[]> {
  const db = openDatabase(databaseUrl);
  try {
    const rows = await db.selectFrom('device_desired').select(['device_id', 'published_at']).execute();
    const publishedAt = new Map(rows.map((row) => [row.device_id, row.published_at]));
    return status.devices
      .map(
        (device) =>
          (publishedAt.get(device.deviceId) ?? Number.NaN) -
          (status.waves[device.waveIndex]?.startedAt ?? Number.NaN),
      )
      .filter((ms) => Number.isFinite(ms));
  } finally {
    await db.destroy();
  }
}

function reportAll(servers: BenchReplicas) {
  return Promise.all(servers.replicas.map((replica) => replica.report()));
}

/**
 * The operator's REST calls, with the admin token; a JSON body, or raw bytes for an upload. A GET
 * whose connection broke is asked again: a kept-alive connection the server closes as the next
 * request leaves is reset, and a server busy with 10,000 devices makes that race common.
 */
function apiOf(httpUrl: string, token: string) {
  const api = async <T>(method: string, path: string, body?: unknown, attempt = 1): Promise<T> => {
    const raw = body instanceof Uint8Array;
    let response: Response;
    try {
      response = await fetch(`${httpUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': raw ? 'application/octet-stream' : 'application/json',
        },
        ...(body === undefined ? {} : { body: raw ? body : JSON.stringify(body) }),
      });
    } catch (error) {
      if (method !== 'GET' || attempt >= GET_ATTEMPTS) throw error;
      return api(method, path, body, attempt + 1);
    }
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  };
  return api;
}

function failureReasons(status: RolloutStatus): Array<[string, number]> {
  const counts = new Map<string, number>();
  for (const device of status.devices)
    if (device.state === 'failed') {
      const reason = device.reason ?? 'no reason given';
      counts.set(reason, (counts.get(reason) ?? 0) + 1);
    }
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3);
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
