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
