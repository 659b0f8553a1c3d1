import { describe, expect, it } from 'vitest';
import { cgroupRootMissing } from './cgroup-hierarchy.ts';

const line = (mountPoint: string, type: string) =>
  `31 23 0:28 / ${mountPoint} rw,relatime - ${type} ${type} rw`;

describe('cgroupRootMissing', () => {
  it('finds no cgroup hierarchy on a minimal init that mounted only sysfs', () => {
    expect(cgroupRootMissing([line('/', 'squashfs'), line('/sys', 'sysfs'), ''].join('\n'))).toBe(true);
  });

  it.each([
    ['cgroup v2', [line('/sys/fs/cgroup', 'cgroup2')]],
    ['cgroup v1 or hybrid', [line('/sys/fs/cgroup', 'tmpfs'), line('/sys/fs/cgroup/cpu', 'cgroup')]],
  ])('leaves a host with %s as it is', (_name, lines) => {
    expect(cgroupRootMissing([line('/sys', 'sysfs'), ...lines].join('\n'))).toBe(false);
  });

  it('does not take a hierarchy mounted below /sys/fs/cgroup for one at it', () => {
    expect(cgroupRootMissing(line('/sys/fs/cgroup/unified', 'cgroup2'))).toBe(true);
  });
});
