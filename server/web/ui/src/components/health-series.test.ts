import { describe, expect, it } from 'vitest';
import type { StoredHealth } from '../api/types.ts';
import { connectivitySeries, healthSeries } from './health-series.ts';

const sample = (at: number, load = 0.5): StoredHealth => ({
  at,
  receivedAt: at,
  uptimeSeconds: at / 1000,
  load: [load, load / 2, load / 4],
  memory: { totalBytes: 1000, availableBytes: 250 },
  disk: { totalBytes: 2000, freeBytes: 1000 },
  cpuTemperatureCelsius: null,
  agentRssBytes: 1,
});

describe('healthSeries', () => {
  it('breaks the lines where heartbeats stopped for more than three usual intervals', () => {
    const series = healthSeries([sample(0), sample(1000), sample(2000), sample(3000), sample(20_000)]);
    expect(series.gaps).toEqual([{ from: 3000, to: 20_000 }]);
    expect(series.x).toEqual([0, 1000, 2000, 3000, 3001, 20_000]);
    expect(series.load[0]).toEqual([0.5, 0.5, 0.5, 0.5, null, 0.5]);
    expect(series.memoryPercent[0]).toBe(75);
    expect(series.diskPercent[0]).toBe(50);
    expect(series.temperature.every((value) => value === null)).toBe(true);
  });

  it('sees no gap in evenly spaced samples', () => {
    expect(healthSeries([sample(0), sample(5000), sample(10_000)]).gaps).toEqual([]);
  });
});

describe('connectivitySeries', () => {
  it('counts the time offline from the presence changes within the range', () => {
    const result = connectivitySeries(
      [
        { at: 10_000, state: 'offline', reason: 'connection-lost' },
        { at: 25_000, state: 'online', reason: 'started' },
      ],
      0,
      60_000,
      true,
    );
    expect(result.x).toEqual([0, 10_000, 25_000, 60_000]);
    expect(result.online).toEqual([1, 0, 1, 1]);
    expect(result.offlineMs).toBe(15_000);
  });

  it('holds the current state over a range without changes', () => {
    expect(connectivitySeries([], 0, 1000, false)).toEqual({ x: [0, 1000], online: [0, 0], offlineMs: 1000 });
  });
});
