import type { DeviceRecord } from '../devices/device.repository.ts';

/**
 * What an operator should hear before starting a rollout on these target devices: a target that
 * matches nothing (a mistyped tag) or only offline devices would otherwise start and sit still.
 */
export function targetWarnings(targets: readonly Pick<DeviceRecord, 'online'>[], dynamic: boolean): string[] {
  if (targets.length === 0) {
    return [
      dynamic
        ? 'no device matches the target: the rollout would wait for devices that start matching'
        : 'no device matches the target',
    ];
  }
  const online = targets.filter((device) => device.online).length;
  if (online === 0) {
    return [`all ${targets.length} matching device(s) are offline: they update when they come back online`];
  }
  return [];
}
