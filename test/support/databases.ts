import { execFileSync, spawn } from 'node:child_process';
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
    const adminUrl = await postgresAdminUrl;
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
  },
};

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
  const child = spawn(server.file, server.rest, { stdio: 'ignore', detached: false });
  process.once('exit', () => {
    child.kill('SIGINT');
  });
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      await withClient(url, (client) => client.query('SELECT 1'));
      return url;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`the throwaway PostgreSQL in ${dir} did not start on port ${port}`);
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
