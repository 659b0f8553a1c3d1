import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** A database the same test suite runs against: SQLite and PostgreSQL share every test. */
export interface DatabaseBackend {
  name: 'sqlite' | 'postgresql';
  /** A fresh, empty database; returns its URL and how to drop it. */
  create(): Promise<{ url: string; drop(): Promise<void> }>;
}

export const sqliteBackend: DatabaseBackend = {
  name: 'sqlite',
  async create() {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-sqlite-'));
    return {
      url: `sqlite:${join(dir, 'test.sqlite')}`,
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  },
};

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432/postgres';
let postgresAdminUrl: Promise<string> | null = null;

/**
 * PostgreSQL at 127.0.0.1:5432 when one answers (trust auth, as on our machines and CI);
 * otherwise a throwaway server from Debian's binaries in a temp dir on a free port.
 */
export const postgresBackend: DatabaseBackend = {
  name: 'postgresql',
  async create() {
    postgresAdminUrl ??= findOrStartPostgres();
    return createPostgresDatabase(await postgresAdminUrl);
  },
};

/** Databases on a given PostgreSQL server (e.g. a `startPostgresCluster` the test stops and starts). */
export const postgresBackendAt = (adminUrl: string): DatabaseBackend => ({
  name: 'postgresql',
  create: () => createPostgresDatabase(adminUrl),
});

async function createPostgresDatabase(adminUrl: string) {
  const name = `boardfleet_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
  await withClient(adminUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () =>
      withClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined,
      ),
  };
}

/**
 * Locks a table of a PostgreSQL database so that writes to it wait, to catch a writer mid-write;
 * then ends every other session of that database, as an operator or a failover would.
 */
export async function lockTable(databaseUrl: string, table: string) {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  return {
    /** How many sessions wait for the lock (poll it to know a write is under way). */
    async waitingWriters(): Promise<number> {
      const { rows } = await client.query<{ waiting: number }>(
        "SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
      );
      return rows[0]?.waiting ?? 0;
    },
    /** Ends every other session of the database, then releases the lock; returns how many it ended. */
    async terminateOthersAndRelease(): Promise<number> {
      try {
        const { rowCount } = await client.query(
          'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
        );
        await client.query('ROLLBACK');
        return rowCount ?? 0;
      } finally {
        await client.end();
      }
    },
  };
}

export const databaseBackends: DatabaseBackend[] = [sqliteBackend, postgresBackend];

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  // A connection-level failure also rejects the pending call; the event alone must not end the run.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function findOrStartPostgres(): Promise<string> {
  try {
    await withClient(LOCAL_POSTGRES, (client) => client.query('SELECT 1'));
    return LOCAL_POSTGRES;
  } catch {
    return startThrowawayPostgres();
  }
}

async function startThrowawayPostgres(): Promise<string> {
  return (await startPostgresCluster()).url;
}

/** A PostgreSQL server of its own that a test may stop and start again (an outage, a restart). */
export interface PostgresCluster {
  /** The admin URL (`postgres` database, trust auth); stays the same across restarts. */
  url: string;
  /** Fast shutdown: ends every connection, then waits for the server to exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it and removes its data directory. */
  dispose(): Promise<void>;
}

const execFileAsync = promisify(execFile);

/** A throwaway server from Debian's binaries in a temp dir on a free port. */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort() : [];
  const binDir = versions.length > 0 ? join('/usr/lib/postgresql', versions.at(-1) as string, 'bin') : null;
  if (!binDir || !existsSync(join(binDir, 'initdb'))) {
    throw new Error(
      'No PostgreSQL server answers at 127.0.0.1:5432 and none is installed: apt-get install postgresql',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'boardfleet-pg-'));
  const port = await freePort();
  // PostgreSQL refuses to run as root; CI is root, so run it as the postgres user there.
  const asPostgres = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  if (asPostgres.length > 0) execFileSync('chown', ['postgres', dir]);
  const run = (command: string, args: string[]) => {
    const [file, ...rest] = [...asPostgres, command, ...args] as [string, ...string[]];
    return { file, rest };
  };
  const init = run(join(binDir, 'initdb'), [
    '-D',
    join(dir, 'data'),
    '-U',
    'postgres',
    '--auth=trust',
    '-E',
    'UTF8',
  ]);
  execFileSync(init.file, init.rest, { stdio: 'ignore' });
  const server = run(join(binDir, 'postgres'), [
    '-D',
    join(dir, 'data'),
    '-p',
    String(port),
    '-k',
    dir,
    '-h',
    '127.0.0.1',
  ]);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let child: ChildProcess | null = null;
  const start = async () => {
    const started = spawn(server.file, server.rest, { stdio: 'ignore', detached: false });
    child = started;
    for (let attempt = 0; attempt < 100 && started.exitCode === null; attempt++) {
      try {
        await withClient(url, (client) => client.query('SELECT 1'));
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error(`the throwaway PostgreSQL in ${dir} did not start on port ${port}`);
  };
  const stop = async () => {
    const running = child;
    child = null;
    if (!running || running.exitCode !== null) return;
    const exited = once(running, 'exit');
    // runuser does not pass signals on; pg_ctl signals the server itself. Fast mode ends the
    // sessions instead of waiting for them.
    const stopServer = run(join(binDir, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']);
    await execFileAsync(stopServer.file, stopServer.rest);
    await exited;
  };
  // A test process that ends without disposing must not leave the server running.
  const killOnExit = () => {
    if (!child || child.exitCode !== null) return;
    const stopServer = run(join(binDir, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'immediate', 'stop']);
    execFileSync(stopServer.file, stopServer.rest, { stdio: 'ignore' });
  };
  process.once('exit', killOnExit);
  await start();
  return {
    url,
    start,
    stop,
    async dispose() {
      process.off('exit', killOnExit);
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
