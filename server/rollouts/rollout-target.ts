import type { DeviceRecord, DeviceRepository } from '../devices/device.repository.ts';
import type { RolloutTarget } from '../../protocol/api/rollouts.ts';

const PAGE = 1000;

/** Whether a device matches a rollout target: every kind given must match (one of the ids, tags, boards). */
function targetMatcher(target: RolloutTarget): (device: DeviceRecord) => boolean {
  const ids = target.deviceIds ? new Set(target.deviceIds) : null;
  return (device) =>
    (!ids || ids.has(device.id)) &&
    (!target.tags || target.tags.some((tag) => device.tags.includes(tag))) &&
    (!target.boards || target.boards.includes(device.inventory?.board ?? device.board ?? ''));
}

/** The registered (not revoked) devices that match a rollout target, in the repository's order. */
export async function matchTarget(devices: DeviceRepository, target: RolloutTarget): Promise<DeviceRecord[]> {
  const all: DeviceRecord[] = [];
  for (let offset = 0; ; offset += PAGE) {
    const page = await devices.list({ limit: PAGE, offset });
    all.push(...page);
    if (page.length < PAGE) break;
  }
  return all.filter(targetMatcher(target));
}

/** Those of `deviceIds` that are registered (not revoked) and match a rollout target. */
export async function matchTargetAmong(
  devices: DeviceRepository,
  target: RolloutTarget,
  deviceIds: readonly string[],
): Promise<string[]> {
  const matches = targetMatcher(target);
  const matched: string[] = [];
  for (let start = 0; start < deviceIds.length; start += PAGE) {
    const ids = deviceIds.slice(start, start + PAGE);
    for (const device of await devices.list({ ids, limit: ids.length, offset: 0 }))
      if (matches(device)) matched.push(device.id);
  }
  return matched;
}
