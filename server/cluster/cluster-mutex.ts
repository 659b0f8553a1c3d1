import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { Database } from '../db/database.ts';

/** Work that must not run on two replicas at once: the rollout engine's read, plan and write. */
export interface ClusterMutex {
  runExclusive<T>(work: () => Promise<T>): Promise<T>;
}

/** SQLite serves one server process (sqlite-owner.ts): its own queue is all the exclusion there is. */
export const singleProcessMutex: ClusterMutex = { runExclusive: (work) => work() };

/**
 * A PostgreSQL advisory lock held on one connection for the length of the work. Other replicas
 * wait for it; a replica that dies loses its connection and with it the lock, so nothing waits
 * for a dead holder.
 */
export function postgresMutex(db: Database, name: string): ClusterMutex {
  const key = createHash('sha256').update(`boardfleet:${name}`).digest().readBigInt64BE(0);
  return {
    runExclusive: (work) =>
      db.connection().execute(async (connection) => {
        await sql`select pg_advisory_lock(${key})`.execute(connection);
        try {
          return await work();
        } finally {
          await sql`select pg_advisory_unlock(${key})`.execute(connection).catch(() => undefined);
        }
      }),
  };
}

/** The mutex for this database: advisory locks on PostgreSQL, none needed on SQLite. */
export function clusterMutex(db: Database, databaseUrl: string, name: string): ClusterMutex {
  return databaseUrl.startsWith('sqlite:') ? singleProcessMutex : postgresMutex(db, name);
}
