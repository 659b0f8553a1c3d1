import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type Migration, Migrator, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import { BoardfleetError } from '../../protocol/errors.ts';
import * as initial from './migrations/20261124T0100-initial.ts';
import * as artifacts from './migrations/20261124T0200-artifacts.ts';
import * as releases from './migrations/20261124T0300-releases.ts';
import * as rollouts from './migrations/20261124T0400-rollouts.ts';
import * as builds from './migrations/20261129T0500-builds.ts';
import * as dashboard from './migrations/20261129T0600-dashboard.ts';
import * as consoles from './migrations/20261129T0700-consoles.ts';
import * as serverKeys from './migrations/20261204T0800-server-keys.ts';
import * as tokens from './migrations/20261204T0900-tokens.ts';
import * as rolloutTruth from './migrations/20261210T1000-rollout-truth.ts';
import * as replicas from './migrations/20261211T1100-replicas.ts';
import * as auditLog from './migrations/20261218T1200-audit-log.ts';
import * as tuf from './migrations/20261220T1300-tuf.ts';
import * as rollbackOrders from './migrations/20261221T1400-rollback-orders.ts';
import * as rolloutTransfer from './migrations/20261223T1600-rollout-transfer.ts';
import * as artifactChunkIndexes from './migrations/20261224T1700-artifact-chunk-indexes.ts';
import * as webhooks from './migrations/20261225T1000-webhooks.ts';
import * as configVariables from './migrations/20261225T1100-config-variables.ts';
import * as shellSessions from './migrations/20261225T1200-shell-sessions.ts';
import * as rolloutDeviceParts from './migrations/20261226T1000-rollout-device-parts.ts';
import type { DatabaseSchema } from './schema.ts';

export type Database = Kysely<DatabaseSchema>;

/** Migrations by timestamped name; Kysely runs the pending ones in name order. */
export const MIGRATIONS: Record<string, Migration> = {
  '20261124T0100-initial': initial,
  '20261124T0200-artifacts': artifacts,
  '20261124T0300-releases': releases,
  '20261124T0400-rollouts': rollouts,
  '20261129T0500-builds': builds,
  '20261129T0600-dashboard': dashboard,
  '20261129T0700-consoles': consoles,
  '20261204T0800-server-keys': serverKeys,
  '20261204T0900-tokens': tokens,
  '20261210T1000-rollout-truth': rolloutTruth,
  '20261211T1100-replicas': replicas,
  '20261218T1200-audit-log': auditLog,
  '20261220T1300-tuf': tuf,
  '20261221T1400-rollback-orders': rollbackOrders,
  '20261223T1600-rollout-transfer': rolloutTransfer,
  '20261224T1700-artifact-chunk-indexes': artifactChunkIndexes,
  '20261225T1000-webhooks': webhooks,
  '20261225T1100-config-variables': configVariables,
  '20261225T1200-shell-sessions': shellSessions,
  '20261226T1000-rollout-device-parts': rolloutDeviceParts,
};

const PG_INT8_OID = 20;

/** The database holds token and secret hashes: only the server's own user may read it. */
const SQLITE_FILE_MODE = 0o600;

/**
 * SQLite gives its -wal and -shm files the mode of the database file, so creating that one
 * private first covers them; files an older version created are narrowed too.
 */
function makeSqliteFilesPrivate(path: string): void {
  closeSync(openSync(path, 'a', SQLITE_FILE_MODE));
  for (const file of [path, `${path}-wal`, `${path}-shm`])
    if (existsSync(file)) chmodSync(file, SQLITE_FILE_MODE);
}

/**
 * Opens SQLite (`sqlite:PATH`) or PostgreSQL (`postgres://…`) behind one Kysely interface.
 * `onConnectionLost` hears of PostgreSQL ending an idle connection (see DatabaseHealth).
 */
export function openDatabase(
  databaseUrl: string,
  options: { onConnectionLost?: (error: Error) => void } = {},
): Database {
  if (databaseUrl.startsWith('sqlite:')) {
    const path = databaseUrl.slice('sqlite:'.length);
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true });
      makeSqliteFilesPrivate(path);
    }
    const sqlite = new SqliteDatabase(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.pragma('foreign_keys = ON');
    return new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: sqlite }) });
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 10,
    // BIGINT columns hold millisecond timestamps and byte counts, all well inside 2^53.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === PG_INT8_OID
          ? Number
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // The database may end any connection (a restart, a failover, pg_terminate_backend, a dropped
  // database). pg then fails the query under way, or emits 'error' on the client, checked out or
  // idle, and for an idle one on the pool too: unheard, either event would end the whole process.
  // The pool discards such a client and the next query opens a new one.
  pool.on('connect', (client) => client.on('error', (error) => options.onConnectionLost?.(error)));
  pool.on('error', () => undefined);
  return new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) });
}

export async function migrateToLatest(db: Database): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error || failed) {
    throw new BoardfleetError(
      'migration-failed',
      `database migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}
