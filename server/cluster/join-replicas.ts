import type { Logger } from 'pino';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { Clock } from '../common/clock.ts';
import type { ServerConfig } from '../config/config.ts';
import type { Database } from '../db/database.ts';
import type { TelemetryRepository } from '../telemetry/telemetry.repository.ts';
import { type ReplicaRecord, ReplicaRegistry } from './replica-registry.ts';

const EMBEDDED = 'embedded';

/**
 * Registers this server among the replicas on its database. Replicas must share one broker: a
 * second one with an embedded broker, or on another MQTT_URL, would split the fleet, and is
 * refused. The first replica marks the fleet offline (nobody kept presence while no server ran);
 * one joining running replicas keeps what they know.
 */
export async function joinReplicas(
  db: Database,
  config: Pick<ServerConfig, 'mqttUrl' | 'httpHost' | 'httpPort'>,
  deps: { clock: Clock; logger: Logger; telemetry: TelemetryRepository },
): Promise<{ registry: ReplicaRegistry; others: ReplicaRecord[] }> {
  const registry = new ReplicaRegistry(db, deps.clock, deps.logger);
  const broker = config.mqttUrl ?? EMBEDDED;
  const others = await registry.start({ httpUrl: `http://${config.httpHost}:${config.httpPort}`, broker });
  const elsewhere = others.find((other) => other.broker !== broker || broker === EMBEDDED);
  if (elsewhere) {
    await registry.stop();
    const other = `another Boardfleet server (${elsewhere.http_url}) runs on this database`;
    const problem =
      broker === EMBEDDED
        ? `this server has no MQTT_URL and would start its own embedded broker, but ${other} with broker ${elsewhere.broker}`
        : elsewhere.broker === EMBEDDED
          ? `${other} with its own embedded broker`
          : `${other} with broker ${elsewhere.broker}, this one has MQTT_URL=${broker}`;
    throw new BoardfleetError(
      'invalid-config',
      `${problem}: several servers share one external broker; start each with the same MQTT_URL (README, "Scale-out")`,
    );
  }
  if (others.length === 0) {
    const markedOffline = await deps.telemetry.markAllOffline('server-restart', deps.clock.now());
    if (markedOffline > 0)
      deps.logger.info({ devices: markedOffline }, 'devices marked offline until they reconnect');
  } else {
    deps.logger.info(
      { replicas: others.map((other) => other.http_url) },
      `joining ${others.length} running server(s) on this database; the fleet's presence is theirs`,
    );
  }
  return { registry, others };
}
