import { useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import { useOperator } from '../api/session.ts';
import type { RolloutStatus, RolloutStatusDevice, RolloutWave } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatBytes, formatTime } from '../components/format.ts';
import { ProgressBar, progressSegments } from '../components/progress-bar.tsx';
import { Link } from '../components/router.tsx';
import { useArtifactNames } from '../components/use-artifact-names.ts';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';
import { RolloutSettings, waveSettingsText } from './rollout-settings.tsx';

type Action = 'pause' | 'resume' | 'abort' | 'approve';

/** Rows in the all-devices table: a big rollout's thousands would only slow the page. */
const DEVICES_SHOWN = 200;

export function RolloutPage({ id }: { id: string }) {
  const operator = useOperator();
  const path = `/api/v1/rollouts/${encodeURIComponent(id)}`;
  const status = useSnapshot((signal) => api<RolloutStatus>('GET', path, { signal }), [id], 250);
  useLiveEvent(
    'rollout',
    (event) => {
      if (event.rolloutId === id) status.reloadSoon();
    },
    [id, status.reloadSoon],
  );
  const [actionError, setActionError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const releaseParts = compositeArtifactIds(status.data);
  const artifactNames = useArtifactNames(releaseParts);
  const partsText = (ids: readonly string[]) => ids.map((part) => artifactNames.get(part) ?? part).join(', ');

  if (status.error && !status.data) return <ErrorMessage error={status.error} />;
  const rollout = status.data;
  if (!rollout) return <p class="loading">Loading…</p>;

  const act = async (action: Action) => {
    setBusy(true);
    setActionError(null);
    try {
      await api('POST', `${path}/${action}`);
      status.reload();
    } catch (failure) {
      setActionError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  const canOperate = operator !== null && operator.role !== 'viewer';
  const ended = rollout.state === 'completed' || rollout.state === 'aborted';
  const awaitingApproval = rollout.waves.some((wave) => wave.state === 'awaiting-approval');
  const buttons: { action: Action; label: string; enabled: boolean; danger?: boolean }[] = [
    { action: 'pause', label: 'Pause', enabled: rollout.state === 'running' },
    { action: 'resume', label: 'Resume', enabled: rollout.state === 'paused' },
    { action: 'approve', label: 'Approve', enabled: !ended && awaitingApproval },
    { action: 'abort', label: 'Abort', enabled: !ended, danger: true },
  ];
  const failed = rollout.devices.filter(
    (device) => device.state === 'failed' || device.state === 'rolled-back',
  );

  return (
    <section>
      <p class="crumbs">
        <Link href="/rollouts">Rollouts</Link> › {rollout.name}
      </p>
      <h1>{rollout.name}</h1>
      <p>
        State:{' '}
        <span class={`state state-${rollout.state}`} data-testid="rollout-state" aria-live="polite">
          {rollout.state}
        </span>
        {rollout.reason && <span class="muted"> — {rollout.reason}</span>}
      </p>
      <div class="actions" role="group" aria-label="Steer the rollout">
        {buttons.map((button) => (
          <button
            key={button.action}
            type="button"
            class={button.danger ? 'danger' : ''}
            disabled={!canOperate || busy || !button.enabled}
            title={canOperate ? undefined : 'needs the operator role'}
            onClick={() => {
              if (button.action === 'abort' && !confirm(`Abort rollout ${rollout.name}?`)) return;
              void act(button.action);
            }}
          >
            {button.label}
          </button>
        ))}
      </div>
      {!canOperate && <p class="hint">You are signed in as a viewer: steering needs the operator role.</p>}
      <ErrorMessage error={actionError} />

      <h2>Target and settings</h2>
      <RolloutSettings rollout={rollout} />
      {releaseParts.length > 0 && (
        <p data-testid="rollout-parts">
          <span class="muted">Parts:</span> {partsText(releaseParts)}
        </p>
      )}

      <h2>Waves</h2>
      <ol class="waves">
        {rollout.waves.map((wave) => (
          <WaveProgress key={wave.index} wave={wave} />
        ))}
      </ol>

      <h2>Downloads</h2>
      <p data-testid="rollout-transfer">{transferText(rollout.transfer)}</p>

      <h2>Failed devices</h2>
      {failed.length === 0 ? (
        <p class="muted">None.</p>
      ) : (
        <div class="table-wrap">
          <table data-testid="failed-devices">
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Wave</th>
                <th scope="col">State</th>
                <th scope="col">Reason</th>
              </tr>
            </thead>
            <tbody>
              {failed.map((device) => (
                <tr key={device.deviceId}>
                  <td>
                    <DeviceCell device={device} />
                  </td>
                  <td>{rollout.waves[device.waveIndex]?.name ?? device.waveIndex + 1}</td>
                  <td>{device.state}</td>
                  <td class="text">{device.reason ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <details class="all-devices">
        <summary>All devices ({rollout.devices.length})</summary>
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Wave</th>
                <th scope="col">State</th>
                <th scope="col">Progress</th>
                <th scope="col">Download</th>
                {releaseParts.length > 0 && <th scope="col">Parts</th>}
              </tr>
            </thead>
            <tbody>
              {rollout.devices.slice(0, DEVICES_SHOWN).map((device) => (
                <tr key={device.deviceId}>
                  <td>
                    <DeviceCell device={device} />
                  </td>
                  <td>{rollout.waves[device.waveIndex]?.name ?? device.waveIndex + 1}</td>
                  <td>{device.state}</td>
                  <td>{device.progress === null ? '' : `${device.progress}%`}</td>
                  <td data-testid="device-transfer">
                    {device.transferMode === null
                      ? ''
                      : `${device.transferMode} ${formatBytes(device.transferBytes ?? 0)} of ${formatBytes(device.artifactBytes ?? 0)}`}
                  </td>
                  {releaseParts.length > 0 && (
                    <td class="text" data-testid="device-parts">
                      {partsText(artifactIdsOf(device))}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {rollout.devices.length > DEVICES_SHOWN && (
          <p class="hint">
            The first {DEVICES_SHOWN} of {rollout.devices.length}; the waves above count them all.
          </p>
        )}
      </details>

      <h2>History</h2>
      <ol class="log">
        {rollout.log.map((entry, index) => (
          <li key={index}>
            <time dateTime={new Date(entry.at).toISOString()}>{formatTime(entry.at)}</time> {entry.message}
          </li>
        ))}
      </ol>
    </section>
  );
}

/** What a device got: its own artifact, then the other parts of a composite release. */
function artifactIdsOf(device: RolloutStatusDevice): string[] {
  return [...(device.artifactId ? [device.artifactId] : []), ...device.partArtifactIds];
}

/**
 * Every artifact the devices of a composite release got (an app and its attached boards'
 * firmware), in the order first met; none for a release of one artifact per device.
 */
function compositeArtifactIds(rollout: RolloutStatus | null): string[] {
  if (!rollout?.devices.some((device) => device.partArtifactIds.length > 0)) return [];
  return [...new Set(rollout.devices.flatMap(artifactIdsOf))];
}

/** A device by its name, with its id beneath (a deleted device has only its id). */
function DeviceCell({ device }: { device: RolloutStatusDevice }) {
  return (
    <>
      <Link href={`/devices/${encodeURIComponent(device.deviceId)}`}>
        {device.deviceName ?? device.deviceId}
      </Link>
      {device.deviceName !== null && <div class="id">{device.deviceId}</div>}
    </>
  );
}

function WaveProgress({ wave }: { wave: RolloutWave }) {
  const { size, committed } = wave.counts;
  const segments = progressSegments(wave.counts);
  return (
    <li
      class="wave"
      data-testid="wave-progress"
      data-wave-state={wave.state}
      data-committed={committed}
      data-size={size}
    >
      <div class="wave-head">
        <strong>{wave.name}</strong> <span class={`state wave-${wave.state}`}>{wave.state}</span>
        <span class="muted">
          {' '}
          {committed}/{size} committed
        </span>
      </div>
      <p class="wave-settings hint">{waveSettingsText(wave.config)}</p>
      <ProgressBar counts={wave.counts} label={wave.name} />
      <ul class="legend">
        {segments.map((segment) => (
          <li key={segment.key}>
            <span class={`swatch ${segment.key}`} aria-hidden="true" /> {segment.label} {segment.value}
          </li>
        ))}
      </ul>
    </li>
  );
}

/** `3 delta, 1 full — 1.2 MiB fetched of 270.0 MiB in full (99.6% saved)`. */
function transferText(transfer: RolloutStatus['transfer']): string {
  if (transfer.deltaDevices + transfer.fullDevices === 0) return 'No device has downloaded its artifact yet.';
  const saved =
    transfer.artifactBytes > 0
      ? ` (${(100 - (transfer.bytes / transfer.artifactBytes) * 100).toFixed(1)}% saved)`
      : '';
  return `${transfer.deltaDevices} delta, ${transfer.fullDevices} full — ${formatBytes(transfer.bytes)} fetched of ${formatBytes(transfer.artifactBytes)} in full${saved}`;
}
