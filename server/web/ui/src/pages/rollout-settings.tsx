import { api } from '../api/client.ts';
import type { Release, RolloutStatus, RolloutWave } from '../api/types.ts';
import { formatDuration, formatTime } from '../components/format.ts';
import { useSnapshot } from '../components/use-snapshot.ts';

/** What the rollout was asked to do: its release, its target and the options it was started with. */
export function RolloutSettings({ rollout }: { rollout: RolloutStatus }) {
  const release = useSnapshot(
    (signal) => api<Release>('GET', `/api/v1/releases/${encodeURIComponent(rollout.releaseId)}`, { signal }),
    [rollout.releaseId],
  );
  const boards = release.data ? Object.keys(release.data.artifacts).join(', ') : '';
  const { options } = rollout;
  return (
    <dl class="facts" data-testid="rollout-settings">
      <Setting term="Release">
        {release.data ? `${release.data.name} (for ${boards})` : rollout.releaseId}
      </Setting>
      <Setting term="Target" testId="rollout-target">
        {targetText(rollout.target)}
      </Setting>
      <Setting term="When a wave trips">
        {options.onTrip === 'abort' ? 'abort the rollout' : 'pause the rollout'}
      </Setting>
      <Setting term="On abort">
        {options.rollbackOnAbort ? 'roll back every device it moved' : 'roll back the devices mid-update'}
      </Setting>
      <Setting term="Devices that start matching">
        {options.dynamic ? 'join the last open wave' : 'are left out (static target)'}
      </Setting>
      <Setting term="Created">{formatTime(rollout.createdAt)}</Setting>
      <Setting term="ID">{rollout.id}</Setting>
    </dl>
  );
}

function Setting({ term, testId, children }: { term: string; testId?: string; children: string }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd data-testid={testId}>{children}</dd>
    </div>
  );
}

/** `devices tagged lab or kitchen, on rpi-4b`: the target as a sentence (a device must match every part). */
function targetText(target: RolloutStatus['target']): string {
  const parts = [
    target.tags && `tagged ${target.tags.join(' or ')}`,
    target.boards && `on ${target.boards.join(' or ')}`,
    target.deviceIds && `among ${target.deviceIds.length} listed device(s)`,
  ].filter(Boolean);
  return `devices ${parts.join(', ')}`;
}

/** A wave's settings in one line: how far it reaches, how long it soaks, when it passes or trips. */
export function waveSettingsText(config: RolloutWave['config']): string {
  return [
    config.canary?.length ? `${config.canary.length} canary device(s)` : null,
    config.percent !== undefined ? `reach ${config.percent} % of the target` : null,
    `soak ${formatDuration(config.soakSeconds)}`,
    `passes at ${config.successThresholdPercent} % committed`,
    `trips above ${config.errorThresholdPercent} % failed`,
    config.requiresApproval ? 'needs approval' : null,
    `${config.maxParallel} at a time`,
    config.notifyRatePerMinute !== null ? `${config.notifyRatePerMinute} a minute` : null,
    `timeout ${formatDuration(config.deviceTimeoutSeconds)}`,
    config.retries > 0 ? `${config.retries} retries` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}
