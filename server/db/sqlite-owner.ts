import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { BoardfleetError } from '../../protocol/errors.ts';
import { processRuns } from '../common/process-alive.ts';

interface Owner {
  pid: number;
  host: string;
  since: number;
}

/**
 * Claims a SQLite database for this server process: `<database>.owner` names the process. SQLite
 * serves one server; a second one would run a second rollout engine and broker on the same rows,
 * so it is refused while the first runs. A claim left by a process that has gone (killed with
 * SIGKILL, the machine rebooted) is taken over. Returns the release, for a clean stop.
 */
export function claimSqliteDatabase(path: string, now: number): () => void {
  const ownerFile = `${path}.owner`;
  const me: Owner = { pid: process.pid, host: hostname(), since: now };
  const claim = () => writeFileSync(ownerFile, `${JSON.stringify(me)}\n`, { mode: 0o600, flag: 'wx' });
  try {
    claim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const held = readOwner(ownerFile);
    if (held && held.pid !== process.pid && processRuns(held.host, held.pid)) {
      throw new BoardfleetError(
        'invalid-config',
        `another Boardfleet server (pid ${held.pid} on ${held.host}) uses the SQLite database ${path}: ` +
          'a SQLite database serves one server process; stop that one, or give several servers one PostgreSQL database (DATABASE_URL=postgres://…)' +
          (held.host === me.host ? '' : `; if that server has gone, delete ${ownerFile}`),
      );
    }
    // Left by a process that has gone, or by this one: taken over. Two servers taking over the
    // same stale claim at once: one creates the file, the other gets EEXIST and stops.
    rmSync(ownerFile, { force: true });
    claim();
  }
  return () => {
    if (readOwner(ownerFile)?.pid === process.pid) rmSync(ownerFile, { force: true });
  };
}

function readOwner(file: string): Owner | null {
  try {
    const owner = JSON.parse(readFileSync(file, 'utf8')) as Partial<Owner>;
    return typeof owner.pid === 'number' && typeof owner.host === 'string' ? (owner as Owner) : null;
  } catch {
    // Missing, or not ours to read (half written by a process that died): nobody holds it.
    return null;
  }
}
