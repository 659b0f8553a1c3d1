import { readFile } from 'node:fs/promises';
import { InstallRefusedError } from '../update-strategy.ts';

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * Whether nothing is mounted at /sys/fs/cgroup, from /proc/self/mountinfo. crun asks that mount
 * which cgroup mode the host has even with no cgroup manager, and stops on the bare sysfs folder
 * a minimal init leaves there ("invalid file system type on '/sys/fs/cgroup'").
 */
export function cgroupRootMissing(mountinfo: string): boolean {
  // Field 5 of each line is the mount point (proc(5)).
  return !mountinfo.split('\n').some((line) => line.split(' ')[4] === CGROUP_ROOT);
}

/**
 * Refuses an install on a host with nothing mounted at /sys/fs/cgroup (Boardfleet's images mount
 * cgroup2 at boot, as systemd and OpenRC do): crun would stop with a message about file system types.
 */
export async function requireCgroupHierarchy(): Promise<void> {
  if (!cgroupRootMissing(await readFile('/proc/self/mountinfo', 'utf8'))) return;
  throw new InstallRefusedError(
    'install-failed',
    `nothing is mounted at ${CGROUP_ROOT}, which crun needs: mount it at boot (mount -t cgroup2 cgroup2 ${CGROUP_ROOT})`,
  );
}
