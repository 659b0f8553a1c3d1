import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, query } from '../api/client.ts';
import type { Deployment, DeviceDetails, PresenceChange, StoredHealth } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatAgo, formatBytes, formatTime } from '../components/format.ts';
import { connectivitySeries, healthSeries } from '../components/health-series.ts';
import { Link } from '../components/router.tsx';
import { TimeChart } from '../components/time-chart.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { live, useLiveEvent } from '../live/live-stream.ts';
import { DeviceConfigPanel } from './device-config-panel.tsx';
import { DeviceLogsPanel } from './device-logs-panel.tsx';
import { DeviceTerminal } from './device-terminal.tsx';
import { HealthText, OnlineBadge } from './fleet-page.tsx';

const RANGES = [
  { label: 'last 15 minutes', ms: 15 * 60_000 },
  { label: 'last hour', ms: 3_600_000 },
  { label: 'last 6 hours', ms: 6 * 3_600_000 },
  { label: 'last 24 hours', ms: 86_400_000 },
  { label: 'last 7 days', ms: 7 * 86_400_000 },
];

export function DevicePage({ id }: { id: string }) {
  const path = `/api/v1/devices/${encodeURIComponent(id)}`;
  const device = useSnapshot((signal) => api<DeviceDetails>('GET', path, { signal }), [id]);
  const deployments = useSnapshot(
    (signal) => api<{ deployments: Deployment[] }>('GET', `${path}/deployments`, { signal }),
    [id],
  );
  useLiveEvent(
    'presence',
    (event) => {
      if (event.deviceId === id) device.reloadSoon();
    },
    [id, device.reloadSoon],
  );
  useLiveEvent('rollout', () => deployments.reloadSoon(), [deployments.reloadSoon]);

  if (device.error) return <ErrorMessage error={device.error} />;
  const details = device.data;
  if (!details) return <p class="loading">Loading…</p>;
  const inventory = details.inventory;
  const latest = deployments.data?.deployments[0];
  return (
    <section>
      <p class="crumbs">
        <Link href="/">Fleet</Link> › {details.name}
      </p>
      <h1>
        {details.name} <OnlineBadge online={details.online} />
      </h1>
      <dl class="facts">
        <Fact term="ID" value={details.id} />
        <Fact term="Board" value={inventory?.board ?? details.board ?? '—'} />
        <Fact term="Tags" value={details.tags.join(', ') || '—'} />
        <Fact term="Last seen" value={formatAgo(details.lastSeenAt)} />
        <Fact term="Running version" value={details.runningVersion ?? '—'} testId="current-version" />
        <Fact
          term="Desired version"
          value={desiredVersion(details.desiredVersion, latest)}
          testId="desired-version"
        />
        <div>
          <dt>Health</dt>
          <dd data-testid="health-problem">
            <HealthText device={details} />
          </dd>
        </div>
        {details.revokedAt !== null && <Fact term="Revoked" value={formatTime(details.revokedAt)} />}
      </dl>

      <h2>Health</h2>
      <HealthCharts id={id} online={details.online} createdAt={details.createdAt} />

      <h2>Inventory</h2>
      {inventory ? (
        <>
          <dl class="facts">
            <Fact term="OS" value={inventory.os} />
            <Fact term="Kernel" value={inventory.kernel} />
            <Fact term="Architecture" value={inventory.architecture} />
            <Fact term="Agent" value={inventory.agentVersion} />
            <Fact term="Hostname" value={inventory.hostname} />
            <Fact term="Reported" value={formatTime(inventory.at)} />
            {details.latestHealth && (
              <Fact
                term="Memory / disk"
                value={`${formatBytes(details.latestHealth.memory.totalBytes)} RAM, ${formatBytes(details.latestHealth.disk.totalBytes)} disk`}
              />
            )}
          </dl>
          <h3>Slots</h3>
          {inventory.slots.length === 0 ? (
            <p class="muted">No slot reported.</p>
          ) : (
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Slot</th>
                    <th scope="col">Artifact</th>
                    <th scope="col">Version</th>
                    <th scope="col">Active</th>
                  </tr>
                </thead>
                <tbody>
                  {inventory.slots.map((slot) => (
                    <tr key={slot.name}>
                      <td>{slot.name}</td>
                      <td>{slot.artifact ?? '—'}</td>
                      <td>{slot.version ?? '—'}</td>
                      <td>{slot.active ? 'yes' : 'no'}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <h3>Attached boards</h3>
          {inventory.attachedBoards.length === 0 ? (
            <p class="muted">No board attached.</p>
          ) : (
            <div class="table-wrap">
              <table data-testid="attached-boards">
                <thead>
                  <tr>
                    <th scope="col">Port</th>
                    <th scope="col">Board</th>
                    <th scope="col">Firmata probe</th>
                  </tr>
                </thead>
                <tbody>
                  {inventory.attachedBoards.map((board) => (
                    <tr key={board.port}>
                      <td>{board.port}</td>
                      <td>{board.board ?? 'unknown'}</td>
                      <td>
                        {board.firmware ? (
                          <span class="badge online">
                            answered: {board.firmware}
                            {board.firmwareVersion ? ` ${board.firmwareVersion}` : ''}
                          </span>
                        ) : (
                          <span class="badge offline">no Firmata answer</span>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      ) : (
        <p class="muted">The device has not reported its inventory yet.</p>
      )}

      <h2>Configuration</h2>
      <DeviceConfigPanel id={id} />

      <h2>Logs</h2>
      <DeviceLogsPanel id={id} />

      <DeviceTerminal id={id} />

      <h2>Deployment history</h2>
      <ErrorMessage error={deployments.error} />
      {deployments.data &&
        (deployments.data.deployments.length === 0 ? (
          <p class="muted">No rollout has reached this device.</p>
        ) : (
          <div class="table-wrap">
            <table data-testid="deployments">
              <thead>
                <tr>
                  <th scope="col">Rollout</th>
                  <th scope="col">Release</th>
                  <th scope="col">Version</th>
                  <th scope="col">State</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Changed</th>
                </tr>
              </thead>
              <tbody>
                {deployments.data.deployments.map((deployment) => (
                  <tr key={deployment.deploymentId}>
                    <td>
                      <Link href={`/rollouts/${encodeURIComponent(deployment.rolloutId)}`}>
                        {deployment.rolloutName}
                      </Link>
                    </td>
                    <td>{deployment.release}</td>
                    <td>{deployment.version ?? '—'}</td>
                    <td>{deployment.outcome ?? deployment.state}</td>
                    <td class="text">{deployment.reason ?? ''}</td>
                    <td>{formatTime(deployment.stateChangedAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
    </section>
  );
}

/** What the server wants the device to run; after a rollback, the version it went back to and from what. */
function desiredVersion(version: string | null, latest: Deployment | undefined): string {
  if (version === null) return 'none set';
  const rolledBackFrom = latest?.state === 'rolled-back' ? latest.version : null;
  return rolledBackFrom && rolledBackFrom !== version
    ? `${version} (rolled back from ${rolledBackFrom})`
    : version;
}

function Fact({ term, value, testId }: { term: string; value: string; testId?: string }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd data-testid={testId}>{value}</dd>
    </div>
  );
}

function HealthCharts({ id, online, createdAt }: { id: string; online: boolean; createdAt: number }) {
  const [rangeMs, setRangeMs] = useState(RANGES[0]?.ms ?? 15 * 60_000);
  const path = `/api/v1/devices/${encodeURIComponent(id)}`;
  const history = useSnapshot(
    async (signal) => {
      const to = Date.now();
      const from = to - rangeMs;
      const [health, presence] = await Promise.all([
        api<{ samples: StoredHealth[] }>('GET', `${path}/health${query({ from, to, limit: 10_000 })}`, {
          signal,
        }),
        api<{ changes: PresenceChange[] }>('GET', `${path}/presence${query({ from, to })}`, { signal }),
      ]);
      return { from, to, samples: health.samples, changes: presence.changes };
    },
    [id, rangeMs],
    5_000,
  );
  useEffect(() => live.watchHealth(id), [id]);
  useLiveEvent(
    'health',
    (event) => {
      if (event.deviceId === id) history.reloadSoon();
    },
    [id, history.reloadSoon],
  );
  useLiveEvent(
    'presence',
    (event) => {
      if (event.deviceId === id) history.reloadSoon();
    },
    [id, history.reloadSoon],
  );

  const data = history.data;
  const series = useMemo(() => (data ? healthSeries(data.samples) : null), [data]);
  // Before it was registered a device has no history: its charts start then.
  const range: [number, number] | undefined = data ? [Math.max(data.from, createdAt), data.to] : undefined;
  const connectivity = useMemo(
    () => (data ? connectivitySeries(data.changes, Math.max(data.from, createdAt), data.to, online) : null),
    [data, createdAt, online],
  );
  const noTemperature = series !== null && series.temperature.every((value) => value === null);
  return (
    <>
      <label class="inline">
        Time range{' '}
        <select value={rangeMs} onChange={(event) => setRangeMs(Number(event.currentTarget.value))}>
          {RANGES.map((option) => (
            <option key={option.ms} value={option.ms}>
              {option.label}
            </option>
          ))}
        </select>
      </label>
      <ErrorMessage error={history.error} />
      {series && connectivity && (
        <div class="charts">
          <TimeChart
            title="CPU load"
            x={series.x}
            ys={series.load}
            range={range}
            series={[
              { label: '1 min', color: '#2563eb' },
              { label: '5 min', color: '#9333ea' },
              { label: '15 min', color: '#64748b' },
            ]}
          />
          <TimeChart
            title="Memory used"
            unit="%"
            yRange={[0, 100]}
            x={series.x}
            ys={[series.memoryPercent]}
            range={range}
            series={[{ label: 'memory', color: '#0891b2' }]}
          />
          <TimeChart
            title="Disk used"
            unit="%"
            yRange={[0, 100]}
            x={series.x}
            ys={[series.diskPercent]}
            range={range}
            series={[{ label: 'disk', color: '#ca8a04' }]}
          />
          <TimeChart
            title="Temperature"
            unit="°C"
            x={series.x}
            ys={[series.temperature]}
            range={range}
            note={noTemperature ? 'the device reports no thermal sensor' : undefined}
            series={[{ label: 'CPU', color: '#dc2626' }]}
          />
          <TimeChart
            title="Connectivity"
            yRange={[0, 1]}
            x={connectivity.x}
            ys={[connectivity.online]}
            range={range}
            note={`offline ${Math.round(connectivity.offlineMs / 1000)} s, ${series.gaps.length} heartbeat gap(s)`}
            series={[{ label: 'online', color: '#16a34a', stepped: true }]}
          />
        </div>
      )}
      {data && data.samples.length === 0 && <p class="muted">No health samples in this range.</p>}
    </>
  );
}
