import { existsSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { arch, freemem, hostname, loadavg, release, totalmem, uptime } from 'node:os';
import type { Health, Inventory } from '../../protocol/schemas.ts';

export interface Collectors {
  health(): Health;
  inventory(): Omit<Inventory, 'slots' | 'attachedBoards' | 'at'>;
}

const readText = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/**
 * Reads the machine the agent runs on: /proc and /sys on Linux (falling back to Node's os
 * module elsewhere), the disk of the agent's data dir, and the agent's own memory.
 */
export class SystemCollectors implements Collectors {
  constructor(
    private readonly dataDir: string,
    private readonly agentVersion: string,
    private readonly boardOverride: string | null,
  ) {}

  health(): Health {
    const uptimeText = readText('/proc/uptime');
    const loadText = readText('/proc/loadavg');
    const load = (loadText ? loadText.split(' ').slice(0, 3).map(Number) : loadavg()) as [
      number,
      number,
      number,
    ];
    const disk = statfsSync(this.dataDir);
    return {
      at: Date.now(),
      uptimeSeconds: uptimeText ? Number(uptimeText.split(' ')[0]) : uptime(),
      load,
      memory: this.memory(),
      disk: { totalBytes: disk.blocks * disk.bsize, freeBytes: disk.bavail * disk.bsize },
      cpuTemperatureCelsius: cpuTemperature(),
      agentRssBytes: process.memoryUsage.rss(),
    };
  }

  private memory() {
    const meminfo = readText('/proc/meminfo');
    const field = (name: string) => {
      const match = meminfo?.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'));
      return match ? Number(match[1]) * 1024 : null;
    };
    return {
      totalBytes: field('MemTotal') ?? totalmem(),
      availableBytes: field('MemAvailable') ?? freemem(),
    };
  }

  inventory() {
    const osRelease = readText('/etc/os-release');
    const model = readText('/proc/device-tree/model')?.replace(/\0/g, '').trim();
    return {
      board: this.boardOverride ?? (model ? boardFromModel(model) : `generic-${arch()}`),
      os: osRelease?.match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1] ?? process.platform,
      kernel: release(),
      architecture: arch(),
      agentVersion: this.agentVersion,
      hostname: hostname(),
    };
  }
}

/** Raspberry Pi models by the device tree's model string, as our board files name them. */
function boardFromModel(model: string): string {
  if (/Raspberry Pi 4/.test(model)) return 'rpi-4b';
  if (/Raspberry Pi 3/.test(model)) return 'rpi-3b';
  if (/Raspberry Pi Zero 2/.test(model)) return 'rpi-zero-2w';
  return model
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, 64);
}

/** The CPU's thermal zone in °C, preferring one named for the CPU or SoC; null where there is none. */
function cpuTemperature(): number | null {
  const base = '/sys/class/thermal';
  if (!existsSync(base)) return null;
  const zones = readdirSync(base)
    .filter((entry) => entry.startsWith('thermal_zone'))
    .map((zone) => ({
      type: readText(`${base}/${zone}/type`)?.trim() ?? '',
      temp: readText(`${base}/${zone}/temp`),
    }))
    .filter((zone) => zone.temp !== null);
  const preferred = zones.find((zone) => /cpu|soc|x86_pkg/i.test(zone.type)) ?? zones[0];
  return preferred ? Number(preferred.temp) / 1000 : null;
}
