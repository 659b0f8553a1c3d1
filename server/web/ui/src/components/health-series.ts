import type { PresenceChange, StoredHealth } from '../api/types.ts';

export interface HealthSeries {
  x: number[];
  load: (number | null)[][];
  memoryPercent: (number | null)[];
  diskPercent: (number | null)[];
  temperature: (number | null)[];
  /** Heartbeat gaps: spans with no sample for much longer than the usual interval. */
  gaps: { from: number; to: number }[];
}

const percent = (used: number, total: number) => (total > 0 ? (used / total) * 100 : null);

/**
 * Turns samples into chart columns. Where two samples are further apart than three times the
 * usual (median) interval, a null is put between them so the lines break where the device was
 * silent instead of drawing a straight line over the gap.
 */
export function healthSeries(samples: StoredHealth[]): HealthSeries {
  const intervals = samples.slice(1).map((sample, index) => sample.at - (samples[index] as StoredHealth).at);
  const sorted = [...intervals].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const gapAfter = median > 0 ? median * 3 : Number.POSITIVE_INFINITY;
  const series: HealthSeries = {
    x: [],
    load: [[], [], []],
    memoryPercent: [],
    diskPercent: [],
    temperature: [],
    gaps: [],
  };
  const push = (at: number, sample: StoredHealth | null) => {
    series.x.push(at);
    for (let index = 0; index < 3; index++)
      series.load[index]?.push(sample ? (sample.load[index] ?? null) : null);
    series.memoryPercent.push(
      sample
        ? percent(sample.memory.totalBytes - sample.memory.availableBytes, sample.memory.totalBytes)
        : null,
    );
    series.diskPercent.push(
      sample ? percent(sample.disk.totalBytes - sample.disk.freeBytes, sample.disk.totalBytes) : null,
    );
    series.temperature.push(sample ? sample.cpuTemperatureCelsius : null);
  };
  samples.forEach((sample, index) => {
    const previous = samples[index - 1];
    if (previous && sample.at - previous.at > gapAfter) {
      series.gaps.push({ from: previous.at, to: sample.at });
      push(previous.at + 1, null);
    }
    push(sample.at, sample);
  });
  return series;
}

/**
 * Online (1) / offline (0) over the range from the presence history; the state before the first
 * change in range is the opposite of that change, and the last state holds until `to`.
 */
export function connectivitySeries(
  changes: PresenceChange[],
  from: number,
  to: number,
  onlineNow: boolean,
): { x: number[]; online: number[]; offlineMs: number } {
  const x: number[] = [];
  const online: number[] = [];
  const first = changes[0];
  let state = first ? (first.state === 'online' ? 0 : 1) : onlineNow ? 1 : 0;
  x.push(from);
  online.push(state);
  let offlineMs = 0;
  let since = from;
  for (const change of changes) {
    if (state === 0) offlineMs += change.at - since;
    state = change.state === 'online' ? 1 : 0;
    since = change.at;
    x.push(change.at);
    online.push(state);
  }
  if (state === 0) offlineMs += to - since;
  x.push(to);
  online.push(state);
  return { x, online, offlineMs };
}
