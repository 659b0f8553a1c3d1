import { type ClusterMutex, clusterMutex } from '../cluster/cluster-mutex.ts';
import { Lease } from '../cluster/lease.ts';
import type { Clock } from '../common/clock.ts';
import type { Database } from '../db/database.ts';

/**
 * How long the ticking replica's lease lasts without renewal (each tick renews it): a replica
 * killed while ticking is replaced within this time, well inside the 10 s the fleet allows.
 */
export const TICKER_LEASE_MS = 6_000;

/** Who ticks the rollouts: the holder of this lease. */
export interface TickerLease {
  /** Takes or renews it; false while another replica holds it. */
  hold(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * The one process on SQLite (sqlite-owner.ts) always ticks: a lease row left by a predecessor that
 * was killed would only keep it waiting.
 */
const onlyProcess: TickerLease = { hold: async () => true, release: async () => undefined };

/**
 * What the rollout engine needs to share a database with other replicas: the mutex its work runs
 * in, and the lease on ticking. On SQLite, which serves one process, both let everything through.
 */
export function rolloutCluster(
  db: Database,
  databaseUrl: string,
  replica: { id: string; clock: Clock },
): { mutex: ClusterMutex; ticker: TickerLease } {
  const sqlite = databaseUrl.startsWith('sqlite:');
  return {
    mutex: clusterMutex(db, databaseUrl, 'rollout-engine'),
    ticker: sqlite
      ? onlyProcess
      : new Lease(db, replica.clock, 'rollout-ticker', replica.id, TICKER_LEASE_MS),
  };
}
