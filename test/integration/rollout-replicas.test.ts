/**
 * The rollout engine on two server replicas: each with its own database pool on one PostgreSQL
 * database and its own MQTT session on one Mosquitto (the devices' messages split between them by
 * the shared subscription), driven by protocol-level device doubles that commit what they are sent.
 */
import type { MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CreateRolloutInput, createRolloutBody } from '../../protocol/api/rollouts.ts';
import { decodePayload } from '../../protocol/codec.ts';
import { DEPLOYMENT_EVENT_TYPE } from '../../protocol/schemas.ts';
import { allDevicesTopic, parseDeviceTopic } from '../../protocol/topics.ts';
import { ArtifactRepository } from '../../server/artifacts/artifact.repository.ts';
import { MosquittoBroker } from '../../server/broker/mosquitto/mosquitto-broker.ts';
import { REPLICA_GONE_AFTER_MS, REPLICA_HEARTBEAT_MS } from '../../server/cluster/replica-registry.ts';
import { systemClock } from '../../server/common/clock.ts';
import { loadServerConfig } from '../../server/config/config.ts';
import { type Database, migrateToLatest, openDatabase } from '../../server/db/database.ts';
import { DeviceRepository } from '../../server/devices/device.repository.ts';
import { ReleaseRepository } from '../../server/releases/release.repository.ts';
import { ReleaseService } from '../../server/releases/release.service.ts';
import { RolloutRepository } from '../../server/rollouts/rollout.repository.ts';
import { RolloutService } from '../../server/rollouts/rollout.service.ts';
import { TelemetryRepository } from '../../server/telemetry/telemetry.repository.ts';
import { type BrokerForServer, startMosquittoForServer } from '../support/broker-modes.ts';
import { postgresBackend } from '../support/databases.ts';
import { EngineReplica } from '../support/engine-replicas.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { ProtocolDeviceDouble } from '../support/protocol-device-double.ts';
import { eventually } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
/** Quick waves: a device commits on the first tick after it reports (it stays online throughout). */
const wave = { soakSeconds: 0, errorThresholdPercent: 0, maxParallel: 2 };

describe('the rollout engine on two replicas (PostgreSQL, Mosquitto)', () => {
  let broker: BrokerForServer & { mosquitto: NonNullable<BrokerForServer['mosquitto']> };
  let database: { url: string; drop(): Promise<void> };
  let db: Database;
  let mosquittoAdmin: MosquittoBroker;
  let releaseId: string;
  let counter: MqttClient;
  /** Every desired state the broker delivered, by device and deployment. */
  const published = new Map<string, number>();
  let replicas: EngineReplica[] = [];
  let doubles: ProtocolDeviceDouble[] = [];
  let mqttUrl: string;

  beforeAll(async () => {
    broker = await startMosquittoForServer();
    database = await postgresBackend.create();
    db = openDatabase(database.url);
    await migrateToLatest(db);
    // The variables `broker-config` wrote, read as the server reads them (it touches no data dir).
    const config = loadServerConfig({ ...broker.env, BOARDFLEET_DATA_DIR: '/nonexistent' });
    mqttUrl = config.mqttUrl!;
    mosquittoAdmin = new MosquittoBroker({
      url: mqttUrl,
      ...config.mqttCredentials!,
      logger: pino({ level: 'silent' }),
    });
    await mosquittoAdmin.start();
    releaseId = await insertRelease(db);
    counter = await connectDevice(mqttUrl, {
      clientId: `desired-counter-${process.pid}`,
      ...broker.serverCredential(''),
    });
    counter.on('message', (topic, payload) => {
      const decoded = decodePayload('desired', payload);
      const deviceId = parseDeviceTopic(topic)?.deviceId;
      if (!decoded.ok || !deviceId) return;
      const key = `${deviceId} ${decoded.value.deployment?.id ?? 'none'}`;
      published.set(key, (published.get(key) ?? 0) + 1);
    });
    await counter.subscribeAsync(allDevicesTopic('desired'), { qos: 1 });
  });
  afterEach(async () => {
    await Promise.all(replicas.map((replica) => replica.stop().catch(() => undefined)));
    await Promise.all(doubles.map((double) => double.close()));
    replicas = [];
    doubles = [];
    // A killed replica's row and lease outlive it (that is the point); the next test starts alone.
    await db.deleteFrom('server_replicas').execute();
    await db.deleteFrom('server_leases').execute();
  });
  afterAll(async () => {
    await counter?.endAsync(true);
    await mosquittoAdmin?.stop();
    await db?.destroy();
    await database?.drop();
    await broker?.dispose();
  });

  async function startReplica(name: string): Promise<EngineReplica> {
    const replica = await EngineReplica.start(name, {
      databaseUrl: database.url,
      mqttUrl,
      server: broker.serverCredential(''),
    });
    replicas.push(replica);
    return replica;
  }

  /** Devices registered in the database and in Mosquitto, online through their doubles. */
  async function fleet(tag: string, count: number): Promise<ProtocolDeviceDouble[]> {
    const devices = new DeviceRepository(db);
    const created: ProtocolDeviceDouble[] = [];
    for (let index = 0; index < count; index++) {
      const deviceId = `dev-${tag}-${String(index).padStart(2, '0')}`;
      const secret = `secret-${deviceId}`;
      await devices.create({
        id: deviceId,
        name: deviceId,
        board: BOARD,
        tags: [tag],
        secretHash: 'unused',
        now: 0,
      });
      await mosquittoAdmin.registerDevice(deviceId, secret);
      const double = new ProtocolDeviceDouble(deviceId, secret, BOARD);
      await double.connect(broker.mosquitto.url);
      created.push(double);
    }
    doubles.push(...created);
    await eventually(`${tag} devices online`, async () => {
      const online = await devices.list({ tag, limit: count, offset: 0 });
      return online.length === count && online.every((device) => device.online);
    });
    return created;
  }

  async function createRollout(replica: EngineReplica, input: CreateRolloutInput): Promise<string> {
    const service = new RolloutService(
      new RolloutRepository(replica.db),
      new DeviceRepository(replica.db),
      new ReleaseService(new ReleaseRepository(replica.db), new ArtifactRepository(replica.db), systemClock),
      replica.engine,
      systemClock,
    );
    return (await service.create(createRolloutBody.parse(input))).id;
  }

  const rolloutState = async (id: string) =>
    (await db.selectFrom('rollouts').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state;
  const deviceStates = async (id: string) =>
    await db
      .selectFrom('rollout_devices')
      .select(['device_id', 'deployment_id', 'state'])
      .where('rollout_id', '=', id)
      .execute();
  const tickerHolder = async () =>
    (
      await db
        .selectFrom('server_leases')
        .select('holder')
        .where('name', '=', 'rollout-ticker')
        .executeTakeFirst()
    )?.holder;
  /** How often each device of the rollout was sent its deployment, by device. */
  const sends = async (id: string) =>
    Object.fromEntries(
      (await deviceStates(id)).map((device) => [
        device.device_id,
        published.get(`${device.device_id} ${device.deployment_id}`) ?? 0,
      ]),
    );

  it('runs a three-wave rollout across both: one ticks, both apply reports, every device is committed and sent its deployment once', async () => {
    const first = await startReplica('one');
    const second = await startReplica('two');
    const devices = await fleet('three-waves', 10);
    const id = await createRollout(second, {
      release: releaseId,
      target: { tags: ['three-waves'] },
      waves: [
        { name: 'canary', canary: [devices[0]!.deviceId], ...wave },
        { name: 'half', percent: 50, ...wave },
        { name: 'rest', percent: 100, ...wave },
      ],
    });
    await eventually('rollout completed', async () => (await rolloutState(id)) === 'completed', 60_000);
    expect((await deviceStates(id)).map((device) => device.state)).toEqual(Array(10).fill('committed'));
    expect(Object.values(await sends(id))).toEqual(Array(10).fill(1));
    // One replica ticks; device reports went to both through the shared subscription.
    expect([first.registry.id, second.registry.id]).toContain(await tickerHolder());
    expect([first.changes, second.changes].every((changes) => changes > 0)).toBe(true);
    expect(await unpublishedCount()).toBe(0);
  });

  it('hands the ticking to the other replica within the lease time when the ticker is killed mid-wave, and the rollout completes', async () => {
    const pair = [await startReplica('one'), await startReplica('two')];
    const devices = await fleet('killed-ticker', 10);
    const holder = await eventually('a replica ticking', tickerHolder);
    const ticker = pair.find((replica) => replica.registry.id === holder)!;
    const other = pair.find((replica) => replica !== ticker)!;
    const id = await createRollout(other, {
      release: releaseId,
      target: { tags: ['killed-ticker'] },
      waves: [
        { name: 'canary', canary: [devices[0]!.deviceId], ...wave },
        { name: 'rest', percent: 100, ...wave },
      ],
    });
    await eventually('three devices committed', async () => {
      const committed = (await deviceStates(id)).filter((device) => device.state === 'committed').length;
      return committed >= 3;
    });
    const killedAt = Date.now();
    await ticker.kill();
    // Only a tick notifies: what is queued now waits for the other replica to take the lease, which
    // the killed one still holds.
    expect((await deviceStates(id)).some((device) => device.state === 'queued')).toBe(true);
    expect(await tickerHolder()).toBe(ticker.registry.id);
    await eventually(
      'the other replica ticks',
      async () => (await tickerHolder()) === other.registry.id,
      10_000,
    );
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThanOrEqual(10_000);
    await eventually('rollout completed', async () => (await rolloutState(id)) === 'completed', 60_000);
    expect((await deviceStates(id)).map((device) => device.state)).toEqual(Array(10).fill('committed'));
    expect(Object.values(await sends(id))).toEqual(Array(10).fill(1));
    expect(await unpublishedCount()).toBe(0);
  });

  it('applies the device reports a replica that died had stored but not applied, once it is gone', async () => {
    const pair = [await startReplica('one'), await startReplica('two')];
    const [device] = await fleet('reports-left', 1);
    // The device reports nothing itself: its reports are those the dying replica stored.
    device!.script = 'hang';
    const holder = await eventually('a replica ticking', tickerHolder);
    const dying = pair.find((replica) => replica.registry.id !== holder)!;
    const id = await createRollout(dying, {
      release: releaseId,
      target: { tags: ['reports-left'] },
      waves: [{ name: 'all', ...wave }],
    });
    await eventually('the device notified', () => device!.desiredSeen.length === 1);
    const deploymentId = (await deviceStates(id))[0]!.deployment_id;
    const telemetry = new TelemetryRepository(db, new DeviceRepository(db));
    for (const [index, state] of (['downloading', 'installing', 'installed'] as const).entries()) {
      await telemetry.insertEvent(
        device!.deviceId,
        { id: `left-${index}`, at: Date.now(), type: DEPLOYMENT_EVENT_TYPE, deploymentId, data: { state } },
        Date.now(),
      );
    }
    expect((await deviceStates(id))[0]?.state).toBe('notified');
    const killedAt = Date.now();
    await dying.kill();
    await eventually('rollout completed', async () => (await rolloutState(id)) === 'completed', 30_000);
    // Not before the registry saw it gone: a live replica may still be applying what it stored.
    expect(Date.now() - killedAt).toBeGreaterThan(REPLICA_GONE_AFTER_MS - REPLICA_HEARTBEAT_MS);
    expect(Object.values(await sends(id))).toEqual([1]);
  });

  it('asks the devices at work to report again on taking over: a report lost with a dead replica comes back', async () => {
    const pair = [await startReplica('asking-one'), await startReplica('asking-two')];
    const [device] = await fleet('asked', 1);
    device!.script = 'lose-last';
    const holder = await eventually('a replica ticking', tickerHolder);
    const ticker = pair.find((replica) => replica.registry.id === holder)!;
    const id = await createRollout(ticker, {
      release: releaseId,
      target: { tags: ['asked'] },
      waves: [{ name: 'all', ...wave }],
    });
    // Committed on the device, but that report went down with the replica it was handed to.
    await eventually(
      'the device installing',
      async () => (await deviceStates(id))[0]?.state === 'installing',
    );
    expect(device!.commandsSeen).toEqual([]);
    await ticker.kill();
    await eventually('rollout completed', async () => (await rolloutState(id)) === 'completed', 30_000);
    expect(device!.commandsSeen.map((command) => command.type)).toEqual(['report']);
    expect((await deviceStates(id))[0]?.state).toBe('committed');
  });

  it('publishes on taking the lease only the desired states a dead replica wrote but never sent', async () => {
    const dying = await startReplica('dying');
    const [sent, unsent] = await fleet('unsent', 2);
    await eventually('the replica ticking', async () => (await tickerHolder()) === dying.registry.id);
    // Holding the lease comes before the first tick's sweep of unpublished states; ticks run one
    // after another, so once this one is done that sweep is behind us and cannot send `sent`.
    await dying.engine.tick();
    const rollouts = new RolloutRepository(db);
    const deployment = (id: string) => ({ ...desiredDeployment, id });
    // The ticker sent `sent`, then wrote `unsent` and died before publishing it.
    await rollouts.saveDesired(
      sent!.deviceId,
      { version: 1, issuedAt: 1, deployment: deployment('dep-sent') },
      1,
    );
    await rollouts.markPublished([{ deviceId: sent!.deviceId, version: 1 }], 2);
    await rollouts.saveDesired(
      unsent!.deviceId,
      { version: 1, issuedAt: 1, deployment: deployment('dep-unsent') },
      1,
    );
    await dying.kill();
    await startReplica('taker');
    await eventually('the unsent desired state delivered', () => unsent!.desiredSeen.length === 1, 10_000);
    expect(published.get(`${unsent!.deviceId} dep-unsent`)).toBe(1);
    expect(published.get(`${sent!.deviceId} dep-sent`)).toBeUndefined();
    expect(sent!.desiredSeen).toEqual([]);
    // Marked once the broker acknowledged it, which the device may beat.
    await eventually('the desired state marked published', async () => (await unpublishedCount()) === 0);
  });

  const unpublishedCount = async () =>
    (await new RolloutRepository(db).allDesired({ unpublished: true })).length;
});

const desiredDeployment = {
  strategy: 'app-bundle' as const,
  artifact: 'app',
  version: '1.0.0',
  sha256: 'a'.repeat(64),
  size: 1,
  url: '/api/v1/artifacts/art-replicas/content',
  manifest: '{}',
  signature: 'unchecked',
  rollbackOrder: null,
};

/** A release of one app bundle for the board; the doubles install nothing, so its bytes need not exist. */
async function insertRelease(db: Database): Promise<string> {
  await new ArtifactRepository(db).insert({
    id: 'art-replicas',
    kind: 'app-bundle',
    name: desiredDeployment.artifact,
    version: desiredDeployment.version,
    boards: [BOARD],
    sha256: desiredDeployment.sha256,
    size: desiredDeployment.size,
    createdAt: 0,
    manifest: desiredDeployment.manifest,
    signature: desiredDeployment.signature,
  });
  const releases = new ReleaseService(new ReleaseRepository(db), new ArtifactRepository(db), systemClock);
  return (await releases.create({ name: 'replicated', artifacts: { [BOARD]: 'art-replicas' } })).id;
}
