// The flags the fleet and rollout benchmarks share: which broker, how many server replicas on
// which database, and how devices get their Mosquitto clients.
import type { BenchDatabase } from './bench-replicas.ts';

/** A flag the benchmark cannot run with: run.ts prints its message as one line, without a stack. */
export class BenchUsageError extends Error {}

export const serverSideOptions = {
  broker: { type: 'string', default: 'embedded' },
  replicas: { type: 'string', default: '1' },
  /** Default: sqlite for one replica, postgresql for more (SQLite serves one server process). */
  database: { type: 'string' },
  /** Default: register up to REGISTER_AT_MOST devices, seed above. */
  'mosquitto-clients': { type: 'string' },
} as const;

/**
 * Mosquitto 2.0 rewrites its whole dynamic-security state file after every command, so registering
 * N devices takes time in N² (10,000: about an hour): larger fleets are seeded unless told otherwise.
 */
const REGISTER_AT_MOST = 1_000;

export interface ServerSideArgs {
  broker: 'embedded' | 'mosquitto';
  replicas: number;
  database: BenchDatabase;
  /** register: MosquittoBroker.registerDevice per device, timed; seed: written into its state file before it starts. */
  seedClients: boolean;
}

/** Checks the shared flags; refuses combinations no deployment can run. */
export function parseServerSide(
  values: {
    broker: string;
    replicas: string;
    database?: string | undefined;
    'mosquitto-clients'?: string | undefined;
  },
  devices: number,
): ServerSideArgs {
  const { broker } = values;
  if (broker !== 'embedded' && broker !== 'mosquitto')
    throw new BenchUsageError(`--broker ${broker}: expected embedded or mosquitto`);
  const replicas = Number(values.replicas);
  if (!Number.isInteger(replicas) || replicas < 1)
    throw new BenchUsageError(`--replicas ${values.replicas}: expected a whole number, 1 or more`);
  const database = values.database ?? (replicas > 1 ? 'postgresql' : 'sqlite');
  if (database !== 'sqlite' && database !== 'postgresql')
    throw new BenchUsageError(`--database ${database}: expected sqlite or postgresql`);
  if (replicas > 1 && broker === 'embedded')
    throw new BenchUsageError(
      `--replicas ${replicas} needs --broker mosquitto: replicas share one external broker, and the embedded one lives inside a single server process`,
    );
  if (replicas > 1 && database === 'sqlite')
    throw new BenchUsageError(
      `--replicas ${replicas} needs --database postgresql: a SQLite database serves one server process`,
    );
  const clients = values['mosquitto-clients'] ?? (devices > REGISTER_AT_MOST ? 'seed' : 'register');
  if (clients !== 'register' && clients !== 'seed')
    throw new BenchUsageError(`--mosquitto-clients ${clients}: expected register or seed`);
  return { broker, replicas, database, seedClients: clients === 'seed' };
}

/** "2 server replicas on PostgreSQL, on Mosquitto", for a benchmark's first line. */
export function describeServerSide(side: ServerSideArgs): string {
  const servers = side.replicas === 1 ? 'one server' : `${side.replicas} server replicas`;
  const database = side.database === 'sqlite' ? 'SQLite' : 'PostgreSQL';
  const broker =
    side.broker === 'embedded'
      ? 'embedded broker'
      : `Mosquitto (device clients ${side.seedClients ? 'seeded into its state file' : 'registered one by one'})`;
  return `${servers} on ${database}, ${broker}`;
}
