import { afterEach, describe, expect, it } from 'vitest';
import type { Healthz } from '../../protocol/api/fleet.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import {
  lockTable,
  type PostgresCluster,
  postgresBackend,
  postgresBackendAt,
  startPostgresCluster,
} from '../support/databases.ts';
import { type InProcessAgent, startInProcessFleet } from '../support/in-process-agents.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
/** How long the database stays stopped in the outage test. */
const OUTAGE_MS = 10_000;
/** Tables the rollout engine writes in one plan; a lock on one holds a plan between its writes. */
const ROLLOUT_TABLES = ['rollout_log', 'rollout_devices', 'rollout_waves', 'device_desired', 'rollouts'];

const wave = (name: string, percent: number, soakSeconds = 1) => ({
  name,
  percent,
  soakSeconds,
  errorThresholdPercent: 0,
  deviceTimeoutSeconds: 120,
});

async function healthz(server: TestServer): Promise<{ status: number; body: Healthz }> {
  return server.api<Healthz>('GET', '/healthz', undefined, '');
}

const startFleet = (server: TestServer, tag: string, count: number) =>
  startInProcessFleet(server, { tag, count, board: BOARD });

const rolloutStatus = async (server: TestServer, id: string) =>
  (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;

/** What moved in a rollout: a change of this string is progress. */
const progressOf = (status: RolloutStatus) =>
  JSON.stringify([status.state, status.waves.map((w) => w.state), status.devices.map((d) => d.state)]);

/** Where a rollout stands, for a failure message. */
const whereItStands = (status: RolloutStatus) =>
  `${status.reason}; devices ${status.devices.map((d) => `${d.state}${d.reason ? ` (${d.reason})` : ''}`).join(', ')}; log: ${status.log.map((e) => e.message).join(' | ')}`;

/** A completed rollout in which every device committed exactly once and every line was logged once. */
function expectConsistentCompletion(done: RolloutStatus, agents: InProcessAgent[], waveNames: string[]) {
  expect(done.state).toBe('completed');
  expect(done.waves.map((w) => [w.name, w.state, w.counts.committed, w.counts.failed])).toEqual(
    waveNames.map((name, index) => [name, 'succeeded', done.waves[index]!.counts.size, 0]),
  );
  expect(done.waves.reduce((sum, w) => sum + w.counts.size, 0)).toBe(agents.length);
  expect(done.devices.map((d) => [d.state, d.attempt])).toEqual(agents.map(() => ['committed', 1]));
  const messages = done.log.map((entry) => entry.message);
  for (const name of waveNames) {
    expect(messages.filter((m) => m === `wave ${name} started`)).toHaveLength(1);
    expect(messages.filter((m) => m.startsWith(`wave ${name} succeeded:`))).toHaveLength(1);
  }
  expect(messages.filter((m) => m === 'all waves succeeded')).toHaveLength(1);
  // Each device was sent one deployment, once: nothing re-planned, nothing lost.
  for (const agent of agents) expect(agent.desiredSeen.map((d) => d.version)).toEqual([1]);
}

describe('PostgreSQL faults during a rollout', () => {
  let server: TestServer | undefined;
  let cluster: PostgresCluster | undefined;
  let agents: InProcessAgent[] = [];

  afterEach(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    agents = [];
    try {
      await server?.dispose();
    } finally {
      server = undefined;
      await cluster?.dispose();
      cluster = undefined;
    }
  });

  it('completes the rollout correctly when its connections are terminated mid-step, again and again', async () => {
    server = await startTestServer(postgresBackend);
    const { release } = await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' });
    agents = await startFleet(server, 'terminate', 4);
    const waveNames = ['canary', 'half', 'all'];
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: ['terminate'] },
      waves: [wave('canary', 25), wave('half', 50), wave('all', 100)],
    });

    let terminated = 0;
    let rounds = 0;
    let last = await rolloutStatus(server, created.id);
    while (last.state !== 'completed') {
      // Hold the engine between two writes of one plan, then end its sessions there.
      const lock = await lockTable(server.databaseUrl, ROLLOUT_TABLES[rounds++ % ROLLOUT_TABLES.length]!);
      const caught = await eventually(
        'a rollout write waiting',
        async () => (await lock.waitingWriters()) > 0,
        5_000,
      )
        .then(() => true)
        .catch(() => false);
      if (caught) terminated += await lock.terminateOthersAndRelease();
      else await lock.terminateOthersAndRelease().then(() => undefined);
      const before = progressOf(last);
      last = await eventually(
        'the rollout to move on after the fault',
        async () => {
          const status = await rolloutStatus(server!, created.id);
          return progressOf(status) !== before ? status : undefined;
        },
        60_000,
      );
      if (last.state === 'paused') throw new Error(`rollout paused: ${whereItStands(last)}`);
    }
    console.info(`${rounds} fault rounds, ${terminated} server sessions terminated mid-rollout`);
    expect(terminated).toBeGreaterThan(0);
    expect(rounds).toBeGreaterThanOrEqual(3);
    expectConsistentCompletion(last, agents, waveNames);
    for (const agent of agents) expect(agent.connected).toBe(true);
    // A ping may have met a terminated session just before: the watcher finds the database again.
    await eventually('/healthz to answer 200', async () => (await healthz(server!)).status === 200);
  }, 180_000);

  it('carries on with the rollout after PostgreSQL is stopped for 10 s during a soak and started again', async () => {
    cluster = await startPostgresCluster();
    server = await startTestServer(postgresBackendAt(cluster.url));
    const { release } = await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' });
    agents = await startFleet(server, 'outage', 3);
    const waveNames = ['first', 'rest'];
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: ['outage'] },
      waves: [wave('first', 34, 5), wave('rest', 100, 1)],
    });
    await eventually(
      'the first wave soaking',
      async () => (await rolloutStatus(server!, created.id)).devices.some((d) => d.state === 'soaking'),
      30_000,
    );

    await cluster.stop();
    const stoppedAt = Date.now();
    const degraded = await eventually('/healthz to answer 503', async () => {
      const answer = await healthz(server!);
      return answer.status === 503 ? answer.body : undefined;
    });
    expect(degraded).toMatchObject({ status: 'degraded', database: { state: 'down' } });
    // An operator is told at once that the database is away, not kept waiting until it is back.
    const pause = await server.api<{ error: { code: string } }>(
      'POST',
      `/api/v1/rollouts/${created.id}/pause`,
    );
    expect(pause.status).toBe(503);
    expect(Date.now() - stoppedAt).toBeLessThan(OUTAGE_MS);
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      expect((await healthz(server)).status).toBe(503);
      expect(agents.every((agent) => agent.connected)).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await cluster.start();
    await eventually(
      '/healthz to answer 200 again',
      async () => (await healthz(server!)).status === 200,
      15_000,
    );

    const done = await eventually(
      'the rollout to complete',
      async () => {
        const status = await rolloutStatus(server!, created.id);
        return ['completed', 'paused'].includes(status.state) ? status : undefined;
      },
      60_000,
    );
    if (done.state === 'paused') throw new Error(`rollout paused: ${whereItStands(done)}`);
    expectConsistentCompletion(done, agents, waveNames);
  }, 180_000);
});
