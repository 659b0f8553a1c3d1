import type { Health, Inventory } from '../../protocol/schemas.ts';

/** Below this share of free disk or available memory, a device is short of room to update or run. */
export const LOW_RESOURCE_PERCENT = 10;
/** A Raspberry Pi throttles its CPU from 80 °C (85 °C on later firmware): running hot is a warning sign. */
export const HOT_CPU_CELSIUS = 80;

const percent = (part: number, whole: number) => Math.round((part / whole) * 100);

/**
 * Why a heartbeat looks unhealthy, or null: disk or memory under 10 % free, or the CPU at 80 °C or
 * more. Load averages are left out: the heartbeat carries no core count to judge them against.
 */
export function healthProblem(health: Health): string | null {
  const problems: string[] = [];
  const { disk, memory, cpuTemperatureCelsius } = health;
  if (disk.totalBytes > 0 && (disk.freeBytes / disk.totalBytes) * 100 < LOW_RESOURCE_PERCENT)
    problems.push(`disk ${100 - percent(disk.freeBytes, disk.totalBytes)}% full`);
  if (memory.totalBytes > 0 && (memory.availableBytes / memory.totalBytes) * 100 < LOW_RESOURCE_PERCENT)
    problems.push(`memory ${100 - percent(memory.availableBytes, memory.totalBytes)}% used`);
  if (cpuTemperatureCelsius !== null && cpuTemperatureCelsius >= HOT_CPU_CELSIUS)
    problems.push(`CPU at ${Math.round(cpuTemperatureCelsius)} °C`);
  return problems.length > 0 ? problems.join(', ') : null;
}

/** Why an attached board looks unhealthy, or null: a known board whose last probe got no Firmata answer. */
export function attachedBoardProblem(inventory: Inventory): string | null {
  const silent = inventory.attachedBoards.filter((board) => board.board !== null && board.firmware === null);
  if (silent.length === 0) return null;
  return silent.map((board) => `${board.board} on ${board.port} does not answer Firmata`).join(', ');
}

/** The version the device runs: its active slot's, or null when it reports none. */
export function runningVersion(inventory: Inventory): string | null {
  return inventory.slots.find((slot) => slot.active)?.version ?? null;
}
