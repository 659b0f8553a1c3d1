import { eventually } from './test-server.ts';

/** Whether the process still runs: signal 0 only asks. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills a bench board a test started and did not get to stop, and waits until it is gone. */
export async function killLeftoverBench(pid: number | undefined, timeoutMs: number): Promise<void> {
  if (pid === undefined || !isAlive(pid)) return;
  process.kill(pid, 'SIGKILL');
  await eventually('the simulated board gone', () => !isAlive(pid), timeoutMs);
}
