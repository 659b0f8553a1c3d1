import { hostname } from 'node:os';

/**
 * Whether the process `pid` on `host` runs. A process on another host cannot be checked from
 * here: it is taken to run (its own heartbeat or claim says when it has gone).
 */
export function processRuns(host: string, pid: number): boolean {
  if (host !== hostname()) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
