import { sql } from 'kysely';
import pino from 'pino';
import { ArtifactRepository } from '../../server/artifacts/artifact.repository.ts';
import { SERVER_SHARED_GROUP } from '../../server/broker/mosquitto/mosquitto-broker.ts';
import { ServerMqttClient } from '../../server/broker/server-mqtt-client.ts';
import { ReplicaRegistry } from '../../server/cluster/replica-registry.ts';
import { systemClock } from '../../server/common/clock.ts';
import { DatabaseHealth } from '../../server/db/database-health.ts';
import { type Database, openDatabase } from '../../server/db/database.ts';
import { DeviceRepository } from '../../server/devices/device.repository.ts';
import { ServerMetrics } from '../../server/metrics/metrics.ts';
import { ReleaseRepository } from '../../server/releases/release.repository.ts';
import { ReleaseService } from '../../server/releases/release.service.ts';
import { RolloutRepository } from '../../server/rollouts/rollout.repository.ts';
import { rolloutCluster } from '../../server/rollouts/rollout-cluster.ts';
import { RolloutEngine } from '../../server/rollouts/rollout-engine.ts';
import { TelemetryIngestService } from '../../server/telemetry/telemetry-ingest.service.ts';
import { TelemetryRepository } from '../../server/telemetry/telemetry.repository.ts';
import type { MqttCredential } from './broker-modes.ts';

/**
 * The rollout side of one server replica, wired as the server wires it (boardfleet-server.ts):
 * its own database pool, replica registration, MQTT session in the servers' shared group, ingest
 * and rollout engine. Several in one test process stand for several server processes on one
 * PostgreSQL database and one Mosquitto.
 */
export class EngineReplica {
  /** How many times this replica's engine changed a rollout (its share of the work). */
  changes = 0;

  private constructor(
    readonly name: string,
    readonly db: Database,
    readonly engine: RolloutEngine,
    readonly registry: ReplicaRegistry,
    private readonly health: DatabaseHealth,
    private readonly mqtt: ServerMqttClient,
    private readonly ingest: TelemetryIngestService,
  ) {
    engine.on('rollout-changed', () => this.changes++);
  }

  static async start(
    name: string,
    options: { databaseUrl: string; mqttUrl: string; server: MqttCredential },
  ): Promise<EngineReplica> {
    const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }).child({ replica: name });
    const health: DatabaseHealth = new DatabaseHealth(() => sql`select 1`.execute(db), logger);
    const db = openDatabase(options.databaseUrl, {
      onConnectionLost: (error) => health.reportFailure(error),
    });
    health.start();
    const registry = new ReplicaRegistry(db, systemClock, logger);
    await registry.start({ httpUrl: `http://${name}.invalid`, broker: options.mqttUrl });
    const devices = new DeviceRepository(db);
    const metrics = new ServerMetrics();
    const ingest = new TelemetryIngestService(new TelemetryRepository(db, devices), metrics, health, logger);
    const mqtt = new ServerMqttClient({
      url: options.mqttUrl,
      username: options.server.username,
      secret: options.server.password,
      sharedGroup: SERVER_SHARED_GROUP,
      metrics,
      logger,
      onDeviceMessage: (topic, payload) => ingest.handleMessage(topic, payload),
    });
    await mqtt.start();
    const engine = new RolloutEngine({
      rollouts: new RolloutRepository(db),
      devices,
      releases: new ReleaseService(new ReleaseRepository(db), new ArtifactRepository(db), systemClock),
      mqtt,
      clock: systemClock,
      logger,
      database: health,
      ...rolloutCluster(db, options.databaseUrl, { id: registry.id, clock: systemClock }),
      replicas: registry,
      brokerKeepsRetained: true,
    });
    ingest.on('device-event', (deviceId, event) => engine.onDeviceEvent(deviceId, event));
    ingest.on('presence-changed', (deviceId, online) => engine.onPresence(deviceId, online));
    await engine.start();
    return new EngineReplica(name, db, engine, registry, health, mqtt, ingest);
  }

  /** A clean stop, in the server's order: the engine gives its ticker lease up. */
  async stop(): Promise<void> {
    await this.engine.stop();
    await this.ingest.stop();
    await this.mqtt.stop();
    await this.registry.stop();
    this.health.stop();
    await this.db.destroy();
  }

  /**
   * What SIGKILL does to a replica, as far as the others can tell: its broker session and its
   * database connections (with the advisory lock) end, and nothing it would do on a clean stop
   * reaches the database, so its ticker lease stays until it expires. The device messages it had
   * taken from the broker are stored first (the kill lands after the ingest's write, the engine's
   * work aside); the engine's work still queued or under way fails where it stands, a publish not
   * yet acknowledged included.
   */
  async kill(): Promise<void> {
    await this.mqtt.stop();
    await this.ingest.drain();
    await this.db.destroy();
    // Timers only: every write they attempt fails on the closed pool, the lease's release too.
    await this.engine.stop();
    await this.ingest.stop();
    await this.registry.stop().catch(() => undefined);
    this.health.stop();
  }
}
