/**
 * How `boardfleet rollout status` draws a rollout: one line per wave with a bar in which every
 * outcome has its own symbol (a rolled-back device is not a failed one), the timing of each wave
 * (elapsed, the soak still to go, an estimate of when it ends), and the devices with a reason.
 * Pure functions of the API's status and the clock, so the output is tested as text.
 */
import type { DeploymentState, RolloutStatus, WaveState } from '../protocol/api/rollouts.ts';
import { type Colour, formatBytes, formatDuration, formatPercent, type Paint } from './output.ts';

type Wave = RolloutStatus['waves'][number];
type Device = RolloutStatus['devices'][number];

/** The bar's segments, in the order they are drawn; the legend reads the same. */
const SEGMENTS = [
  { key: 'committed', symbol: '#', colour: 'green', label: 'committed' },
  { key: 'inProgress', symbol: '~', colour: 'cyan', label: 'in progress' },
  { key: 'failed', symbol: 'x', colour: 'red', label: 'failed' },
  { key: 'rolledBack', symbol: '<', colour: 'yellow', label: 'rolled back' },
  { key: 'queued', symbol: '.', colour: 'dim', label: 'queued' },
] as const satisfies ReadonlyArray<{ key: string; symbol: string; colour: Colour; label: string }>;

type SegmentKey = (typeof SEGMENTS)[number]['key'];

const WAVE_COLOUR: Partial<Record<WaveState, Colour>> = {
  succeeded: 'green',
  running: 'cyan',
  tripped: 'red',
  aborted: 'yellow',
};
const ROLLOUT_COLOUR: Partial<Record<RolloutStatus['state'], Colour>> = {
  completed: 'green',
  running: 'cyan',
  paused: 'yellow',
  aborted: 'red',
};
const OUTCOME_MARK: Partial<Record<DeploymentState, { symbol: string; colour: Colour; word: string }>> = {
  failed: { symbol: 'x', colour: 'red', word: 'failed' },
  'rolled-back': { symbol: '<', colour: 'yellow', word: 'rolled back' },
};

const BAR_WIDTH = 30;
const FINISHED_WAVES: readonly WaveState[] = ['succeeded', 'tripped', 'aborted'];

/** A wave's devices by what the bar shows: failed here means failed and not rolled back. */
function segmentCounts(wave: Wave): Record<SegmentKey, number> {
  const { committed, inProgress, failed, rolledBack, queued } = wave.counts;
  return { committed, inProgress, failed: failed - rolledBack, rolledBack, queued };
}

function bar(counts: Record<SegmentKey, number>, size: number, paint: Paint): string {
  if (size === 0) return `[${' '.repeat(BAR_WIDTH)}]`;
  let used = 0;
  const cells = SEGMENTS.map((segment) => {
    const width = Math.min(BAR_WIDTH - used, Math.round((counts[segment.key] / size) * BAR_WIDTH));
    used += width;
    return width > 0 ? paint(segment.symbol.repeat(width), segment.colour) : '';
  });
  return `[${cells.join('')}${' '.repeat(BAR_WIDTH - used)}]`;
}

/** How long one device takes from notify to committed, less its wave's soak: measured, or null. */
function deviceWorkMs(status: RolloutStatus): number | null {
  const durations = status.devices.flatMap((device) => {
    const soakMs = (status.waves[device.waveIndex]?.config.soakSeconds ?? 0) * 1000;
    return device.state === 'committed' && device.notifiedAt !== null
      ? [Math.max(0, device.stateChangedAt - device.notifiedAt - soakMs)]
      : [];
  });
  return durations.length > 0 ? durations.reduce((sum, ms) => sum + ms, 0) / durations.length : null;
}

/** The longest soak still to go among a wave's soaking devices, and how many soak. */
function soakLeft(devices: readonly Device[], now: number): { ms: number; soaking: number } {
  const soaking = devices.filter((device) => device.state === 'soaking' && device.soakUntil !== null);
  const ms = Math.max(0, ...soaking.map((device) => (device.soakUntil as number) - now));
  return { ms, soaking: soaking.length };
}

/**
 * When each unfinished wave should end, in ms from now (null: not known yet, or it waits for an
 * approval). The running wave is judged by its own pace once devices finished, else like the
 * waves after it: its devices in batches of `maxParallel`, each taking the measured time plus
 * the wave's soak. A wave ends no sooner than the soaks under way.
 */
export function waveEtas(status: RolloutStatus, now: number): Map<number, number | null> {
  const etas = new Map<number, number | null>();
  if (status.state !== 'running' && status.state !== 'paused') return etas;
  const workMs = deviceWorkMs(status);
  let endsAt: number | null = 0;
  for (const wave of status.waves) {
    if (FINISHED_WAVES.includes(wave.state)) continue;
    const devices = status.devices.filter((device) => device.waveIndex === wave.index);
    const remaining = wave.counts.size - wave.counts.committed - wave.counts.failed;
    const done = wave.counts.committed + wave.counts.failed;
    const perDeviceMs = workMs === null ? null : workMs + wave.config.soakSeconds * 1000;
    let own: number | null;
    if (wave.state === 'running' && done > 0 && wave.startedAt !== null)
      own = (remaining * (now - wave.startedAt)) / done;
    else if (perDeviceMs !== null) own = Math.ceil(remaining / wave.config.maxParallel) * perDeviceMs;
    else own = null;
    const soak = soakLeft(devices, now).ms;
    if (own !== null) own = Math.max(own, soak);
    else if (soak > 0 && wave.counts.queued === 0) own = soak;
    endsAt = wave.state === 'awaiting-approval' || endsAt === null || own === null ? null : endsAt + own;
    etas.set(wave.index, endsAt);
  }
  return etas;
}

function timingLine(status: RolloutStatus, wave: Wave, eta: number | null | undefined, now: number): string {
  const since = (at: number | null) => (at === null ? null : formatDuration((now - at) / 1000));
  if (FINISHED_WAVES.includes(wave.state)) {
    return wave.startedAt !== null && wave.finishedAt !== null
      ? `took ${formatDuration((wave.finishedAt - wave.startedAt) / 1000)}`
      : '';
  }
  if (wave.state === 'awaiting-approval') return `waits for: boardfleet rollout approve ${status.id}`;
  const parts: string[] = [];
  if (wave.state === 'running' && wave.startedAt !== null) parts.push(`elapsed ${since(wave.startedAt)}`);
  const soak = soakLeft(
    status.devices.filter((device) => device.waveIndex === wave.index),
    now,
  );
  if (soak.soaking > 0) parts.push(`soak ${formatDuration(soak.ms / 1000)} left (${soak.soaking} soaking)`);
  if (eta !== undefined) parts.push(`ETA ${eta === null ? 'unknown' : formatDuration(eta / 1000)}`);
  return parts.join(', ');
}

/** An artifact as the view names it: `gateway-app 1.0.0 (rpi-4b)`. */
export interface ArtifactLabel {
  name: string;
  version: string;
  boards: readonly string[];
}

/** What a device got: its own artifact, then its parts. */
const artifactIdsOf = (device: Device) => [
  ...(device.artifactId ? [device.artifactId] : []),
  ...device.partArtifactIds,
];

/**
 * The artifacts of a composite release that the rollout's devices got (each device's own and its
 * parts), in the order first met; empty when no device got more than one.
 */
export function compositeArtifactIds(status: RolloutStatus): string[] {
  if (!status.devices.some((device) => device.partArtifactIds.length > 0)) return [];
  return [...new Set(status.devices.flatMap((device) => artifactIdsOf(device)))];
}

/**
 * The labels of a composite rollout's artifacts, each looked up once: `cache` keeps them between
 * the re-draws of a watch. An artifact that cannot be read is shown by its id.
 */
export async function artifactLabelsOf(
  status: RolloutStatus,
  lookUp: (id: string) => Promise<ArtifactLabel>,
  cache: Map<string, ArtifactLabel>,
): Promise<Map<string, ArtifactLabel>> {
  const missing = compositeArtifactIds(status).filter((id) => !cache.has(id));
  const found = await Promise.allSettled(missing.map((id) => lookUp(id)));
  missing.forEach((id, index) => {
    const result = found[index]!;
    if (result.status === 'fulfilled') cache.set(id, result.value);
  });
  return cache;
}

const artifactText = (id: string, labels: ReadonlyMap<string, ArtifactLabel>, withBoards: boolean) => {
  const label = labels.get(id);
  if (!label) return id;
  const boards = withBoards && label.boards.length > 0 ? ` (${label.boards.join('/')})` : '';
  return `${label.name} ${label.version}${boards}`;
};

/** A composite rollout's devices, each with the parts it got; none for a rollout of one artifact. */
function partsLines(status: RolloutStatus, labels: ReadonlyMap<string, ArtifactLabel>): string[] {
  const rows = status.devices.map((device) => [
    deviceLabel(device),
    device.state,
    artifactIdsOf(device)
      .map((id) => artifactText(id, labels, false))
      .join(', ') || '-',
  ]);
  const widths = [0, 1].map((column) =>
    Math.max(column === 0 ? 'device'.length : 'state'.length, ...rows.map((row) => row[column]!.length)),
  );
  return [['device', 'state', 'parts'], ...rows].map(
    ([label, state, parts]) => `  ${label!.padEnd(widths[0]!)}  ${state!.padEnd(widths[1]!)}  ${parts}`,
  );
}

function deviceLabel(device: Device): string {
  return device.deviceName ? `${device.deviceName} (${device.deviceId})` : device.deviceId;
}

/**
 * The whole status as text: header (with a composite release's parts, named by `artifacts`),
 * waves with bars and timing, legend, each device's parts when the release has several, devices
 * with a reason.
 */
export function renderRolloutStatus(
  status: RolloutStatus,
  now: number,
  paint: Paint,
  artifacts: ReadonlyMap<string, ArtifactLabel> = new Map(),
): string {
  const finished = status.state === 'completed' || status.state === 'aborted';
  const clock = finished
    ? `took ${formatDuration((status.updatedAt - status.createdAt) / 1000)}`
    : `elapsed ${formatDuration((now - status.createdAt) / 1000)}`;
  const state = paint(status.state, ROLLOUT_COLOUR[status.state] ?? 'dim');
  const lines = [
    `${status.name} (${status.id}): ${state}${status.reason ? ` — ${status.reason}` : ''} (${clock})`,
  ];
  const composite = compositeArtifactIds(status);
  if (composite.length > 0)
    lines.push(`  parts: ${composite.map((id) => artifactText(id, artifacts, true)).join(', ')}`);
  const etas = waveEtas(status, now);
  for (const wave of status.waves) {
    const counts = segmentCounts(wave);
    const summary = SEGMENTS.filter(
      (segment) => segment.key === 'committed' || segment.key === 'inProgress' || counts[segment.key] > 0,
    )
      .map((segment) =>
        segment.key === 'committed'
          ? `${counts.committed}/${wave.counts.size} committed`
          : `${counts[segment.key]} ${segment.label}`,
      )
      .join(', ');
    const waveState = paint(wave.state.padEnd(17), WAVE_COLOUR[wave.state] ?? 'dim');
    lines.push(`  ${wave.name.padEnd(10)} ${waveState} ${bar(counts, wave.counts.size, paint)} ${summary}`);
    const timing = timingLine(status, wave, etas.get(wave.index), now);
    if (timing) lines.push(`  ${' '.repeat(10)} ${timing}`);
  }
  lines.push(
    `  ${SEGMENTS.map((segment) => `${paint(segment.symbol, segment.colour)} ${segment.label}`).join('  ')}`,
  );
  const downloads = transferLine(status.transfer);
  if (downloads) lines.push(`  ${downloads}`);
  if (composite.length > 0) lines.push(...partsLines(status, artifacts));
  for (const device of status.devices.filter((d) => d.reason)) {
    const mark = OUTCOME_MARK[device.state];
    const word = mark ? paint(`${mark.symbol} ${mark.word}`, mark.colour) : `  ${device.state}`;
    lines.push(`  ${word}  ${deviceLabel(device)} — ${device.reason}`);
  }
  return lines.join('\n');
}

/** `downloads: 3 delta, 1 full — 1.2 MiB fetched of 270.0 MiB in full (99.6 % saved)`; null before any. */
export function transferLine(transfer: RolloutStatus['transfer']): string | null {
  if (transfer.deltaDevices + transfer.fullDevices === 0) return null;
  const saved =
    transfer.artifactBytes > 0
      ? ` (${formatPercent((1 - transfer.bytes / transfer.artifactBytes) * 100)} saved)`
      : '';
  return `downloads: ${transfer.deltaDevices} delta, ${transfer.fullDevices} full — ${formatBytes(transfer.bytes)} fetched of ${formatBytes(transfer.artifactBytes)} in full${saved}`;
}

/** What a re-draw for a pipe depends on: states and counts, not the ticking clock. */
export function statusSignature(status: RolloutStatus): string {
  return JSON.stringify([
    status.state,
    status.waves.map((wave) => [wave.state, wave.counts]),
    status.devices.map((device) => [device.state, device.reason, device.transferMode]),
  ]);
}
