/**
 * Issue 14, "Several replicas", with real processes: two `boardfleet server` replicas on one
 * PostgreSQL database, one data folder and one Mosquitto (configured by `broker-config`), behind
 * a round-robin balancer, and 20 real agent processes. A replica joining keeps the fleet online; a
 * three-wave rollout completes with every device committed once while the replica ticking it is
 * killed with SIGKILL; a subscriber counting `desired` publishes sees one per device and
 * deployment; Mosquitto restarted mid-rollout, the rollout still completes.
 */
import type { MqttClient } from 'mqtt';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage, PresenceHistory } from '../../protocol/api/devices.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { allDevicesTopic } from '../../protocol/topics.ts';
import { type AgentUnderTest, startTaggedAgents } from '../support/agent-fleet.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { type BrokerForServer, startMosquittoForServer } from '../support/broker-modes.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { freePort, postgresBackend } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { type ReplicaCluster, startReplicaCluster } from '../support/replica-cluster.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, TLS_ON_FREE_PORTS } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const TAG = 'replica-fleet';
const AGENTS = 20;
const SLOW = 180_000;
/** The lease a killed replica held is taken over within its time (issue: ≤ 10 s), plus a tick. */
const TAKEOVER_MS = 10_000;

describe('two server replicas on PostgreSQL and Mosquitto, 20 real agents', () => {
  let broker: BrokerForServer & { mosquitto: NonNullable<BrokerForServer['mosquitto']> };
  let cluster: ReplicaCluster;
  let agents: AgentUnderTest[] = [];
  let counter: MqttClient | null = null;
  /** Live (not retained) `desired` publishes: device id → deployment ids, one entry per publish. */
  const desiredPublishes = new Map<string, string[]>();

  const devices = async () =>
    (await cluster.api<DevicePage>('GET', `/api/v1/devices?tag=${TAG}&limit=100`)).body.devices;
  const allOnline = () =>
    eventually(
      `${AGENTS} agents online`,
      async () => {
        const list = await devices();
        return list.length === AGENTS && list.every((device) => device.online);
      },
      SLOW,
    ).catch(async (error: unknown) => {
      const list = await devices().catch(() => []);
      throw new Error(
        `${(error as Error).message}: ${list.filter((d) => d.online).length}/${list.length} online\n` +
          agents
            .filter((agent) => !agent.output().includes('"connected"'))
            .map((agent) => `agent ${agent.name}: ${agent.output().slice(-2000)}`)
            .join('\n') +
          cluster.replicas.map((r) => `replica ${r.index}: ${r.output().slice(-3000)}`).join('\n'),
      );
    });
  const rollout = async (id: string) =>
    (await cluster.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const rolloutUntil = (id: string, what: string, check: (status: RolloutStatus) => boolean) => {
    let last: RolloutStatus | null = null;
    return eventually(
      what,
      async () => {
        last = await rollout(id);
        return check(last) ? last : undefined;
      },
      SLOW,
    ).catch((error: unknown) => {
      const states = last?.devices
        .map((d) => `${d.waveIndex}:${d.state}${d.reason ? ` [${d.reason}]` : ''}`)
        .join(' ');
      throw new Error(
        `${(error as Error).message}; rollout ${last?.state} (${states}); log: ${last?.log.map((e) => e.message).join(' | ')}`,
      );
    });
  };
  /** The replica index whose process holds the rollout ticker's lease, read from PostgreSQL. */
  const tickerHolder = async (): Promise<number | null> => {
    const client = new pg.Client({ connectionString: cluster.databaseUrl });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const { rows } = await client.query<{ holder: string }>(
        "select holder from server_leases where name = 'rollout-ticker' and expires_at > $1",
        [Date.now()],
      );
      const holder = rows[0]?.holder ?? '';
      const index = cluster.replicas.findIndex(
        (replica) => replica.running() && holder.includes(`-${replica.process?.pid}-`),
      );
      return index >= 0 ? index : null;
    } finally {
      await client.end();
    }
  };

  beforeAll(async () => {
    broker = await startMosquittoForServer();
    cluster = await startReplicaCluster(postgresBackend, broker.env, 2);
    await cluster.start(0);
    const { body } = await cluster.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'replicas-e2e',
    });
    agents = startTaggedAgents(cluster, body.token, { tag: TAG, board: BOARD, count: AGENTS });
    await allOnline();
    counter = await connectDevice(broker.mosquitto.url, {
      ...broker.serverCredential(cluster.dataDir),
      clientId: `desired-counter-${process.pid}`,
      reconnectPeriod: 1_000,
    });
    counter.on('error', () => undefined);
    counter.on('message', (topic, payload, packet) => {
      if (packet.retain) return;
      const deviceId = topic.split('/')[3] ?? '';
      const desired = JSON.parse(payload.toString()) as DesiredState;
      const list = desiredPublishes.get(deviceId) ?? [];
      list.push(desired.deployment?.id ?? 'none');
      desiredPublishes.set(deviceId, list);
    });
    await counter.subscribeAsync(allDevicesTopic('desired'), { qos: 1 });
  }, SLOW + 60_000);

  afterAll(async () => {
    await counter?.endAsync(true);
    await Promise.all(agents.map((agent) => agent.dispose()));
    await cluster?.dispose();
    await broker?.dispose();
  });

  it(
    'keeps the fleet online when a second replica joins',
    async () => {
      const joinedAt = Date.now();
      await cluster.start(1);
      expect(cluster.replicas[1]!.output()).toContain('joining 1 running server(s)');
      const list = await devices();
      expect(list.filter((device) => device.online)).toHaveLength(AGENTS);
      for (const device of list) {
        const { body } = await cluster.api<PresenceHistory>(
          'GET',
          `/api/v1/devices/${device.id}/presence?from=${joinedAt}`,
        );
        expect(body.changes.filter((change) => change.state === 'offline')).toEqual([]);
      }
    },
    SLOW,
  );

  it(
    'refuses a third server on the same database with its own embedded broker, saying why',
    async () => {
      const { stdout, stderr } = await cliRunner({
        env: {
          DATABASE_URL: cluster.databaseUrl,
          ...TLS_ON_FREE_PORTS,
          BOARDFLEET_DATA_DIR: cluster.dataDir,
          BOARDFLEET_HTTP_PORT: String(await freePort()),
          BOARDFLEET_MQTT_PORT: String(await freePort()),
          BOARDFLEET_HTTP_HOST: '127.0.0.1',
          MQTT_URL: '',
        },
        timeoutMs: 60_000,
      }).failing('server');
      expect(stdout + stderr).toContain('would start its own embedded broker');
      expect(stdout + stderr).toContain('MQTT_URL');
      // It left the fleet as it was.
      expect((await devices()).filter((device) => device.online)).toHaveLength(AGENTS);
    },
    SLOW,
  );

  it('completes a three-wave rollout, every device committed once, while the ticking replica is SIGKILLed mid-wave', async () => {
    const { release } = await releaseAppBundle(cluster, BOARD, { name: 'app', version: '1.0.0' });
    const created = await cluster.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: [TAG] },
      waves: [
        { name: 'canary', percent: 10, soakSeconds: 1 },
        { name: 'half', percent: 50, soakSeconds: 1 },
        // Three at a time with a soak each: the last wave lasts long enough to lose a replica in.
        { name: 'rest', percent: 100, soakSeconds: 2, maxParallel: 3 },
      ],
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    await rolloutUntil(id, 'the last wave under way', (status) => {
      const last = status.waves[2];
      return !!last && last.counts.committed >= 1 && last.counts.committed < last.counts.size;
    });
    const holder = await tickerHolder();
    expect(holder, 'a running replica holds the rollout ticker lease').not.toBeNull();
    const killedAt = Date.now();
    await cluster.kill(holder!, 'SIGKILL');
    const survivor = 1 - holder!;

    await eventually(
      'the surviving replica holding the ticker',
      async () => (await tickerHolder()) === survivor,
      SLOW,
    );
    // Bounded by the lease: a loaded machine adds its tick and the query, not more.
    expect(Date.now() - killedAt).toBeLessThan(TAKEOVER_MS + 5_000);

    const done = await rolloutUntil(id, 'the rollout completed', (status) => status.state === 'completed');
    expect(done.devices).toHaveLength(AGENTS);
    for (const device of done.devices) {
      expect(device.state, device.deviceId).toBe('committed');
      expect(device.attempt, device.deviceId).toBe(1);
      const published = desiredPublishes.get(device.deviceId) ?? [];
      expect(
        published.filter((deploymentId) => deploymentId === device.deploymentId),
        `desired publishes to ${device.deviceId}`,
      ).toHaveLength(1);
    }
    for (const agent of agents)
      expect(agent.updateRecord()).toMatchObject({ state: 'committed', running: { version: '1.0.0' } });

    await cluster.start(holder!);
    expect(cluster.replicas[holder!]!.output()).toContain('joining 1 running server(s)');
  }, 400_000);

  it('completes a rollout while Mosquitto restarts mid-rollout', async () => {
    const { release } = await releaseAppBundle(cluster, BOARD, { name: 'app', version: '2.0.0' });
    const created = await cluster.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: [TAG] },
      waves: [
        { name: 'first', percent: 20, soakSeconds: 1 },
        { name: 'rest', percent: 100, soakSeconds: 1, maxParallel: 5 },
      ],
    });
    expect(created.status).toBe(201);
    const id = created.body.id;
    await rolloutUntil(id, 'a first device committed', (status) =>
      status.devices.some((device) => device.state === 'committed'),
    );
    await broker.mosquitto.restart();
    const done = await rolloutUntil(id, 'the rollout completed', (status) => status.state === 'completed');
    expect(done.devices.map((device) => device.state)).toEqual(Array(AGENTS).fill('committed'));
    for (const agent of agents)
      expect(agent.updateRecord()).toMatchObject({ state: 'committed', running: { version: '2.0.0' } });
  }, 400_000);
});
