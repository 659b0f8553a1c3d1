import { useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import { session } from '../api/session.ts';
import type { Release, Rollout, RolloutPreview, RolloutSummary, WaveConfig } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../components/format.ts';
import { ProgressBar, progressSegments } from '../components/progress-bar.tsx';
import { Link, navigate } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';

export function RolloutsPage() {
  const rollouts = useSnapshot(
    (signal) => api<{ rollouts: RolloutSummary[] }>('GET', '/api/v1/rollouts', { signal }),
    [],
  );
  const releases = useSnapshot(
    (signal) => api<{ releases: Release[] }>('GET', '/api/v1/releases?limit=200', { signal }),
    [],
  );
  useLiveEvent('rollout', () => rollouts.reloadSoon(), [rollouts.reloadSoon]);
  const noRelease = releases.data?.releases.length === 0;
  return (
    <section>
      <h1>Rollouts</h1>
      <ErrorMessage error={rollouts.error} />
      {rollouts.data &&
        (rollouts.data.rollouts.length === 0 ? (
          <p class="muted" data-testid="no-rollouts">
            No rollout yet.
          </p>
        ) : (
          <RolloutTable rollouts={rollouts.data.rollouts} />
        ))}
      <h2>New rollout</h2>
      <ErrorMessage error={releases.error} />
      {noRelease ? (
        <HowToMakeARelease />
      ) : !session.canOperate() ? (
        <p class="muted">Starting a rollout needs the operator role.</p>
      ) : (
        releases.data && <CreateRolloutForm releases={releases.data.releases} />
      )}
    </section>
  );
}

function RolloutTable({ rollouts }: { rollouts: RolloutSummary[] }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Rollout</th>
            <th scope="col">State</th>
            <th scope="col">Progress</th>
            <th scope="col" class="wide-only">
              Created
            </th>
          </tr>
        </thead>
        <tbody>
          {rollouts.map((rollout) => (
            <tr key={rollout.id} data-testid="rollout-row" data-rollout-id={rollout.id}>
              <td>
                <Link href={`/rollouts/${encodeURIComponent(rollout.id)}`}>{rollout.name}</Link>
                <div class="id">{rollout.id}</div>
              </td>
              <td>
                <span class={`state state-${rollout.state}`}>{rollout.state}</span>
                {rollout.reason && <div class="hint">{rollout.reason}</div>}
              </td>
              <td class="text" data-testid="rollout-progress">
                <ProgressBar counts={rollout.counts} label={rollout.name} />
                <div class="hint">{progressText(rollout.counts)}</div>
              </td>
              <td class="wide-only">{formatTime(rollout.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** `3/20 committed, 1 failed`: the bar's numbers in words, naming only outcomes that happened. */
function progressText(counts: RolloutSummary['counts']): string {
  const others = progressSegments(counts)
    .filter((segment) => segment.key !== 'committed' && segment.value > 0)
    .map((segment) => `${segment.value} ${segment.label}`);
  return [`${counts.committed}/${counts.size} committed`, ...others].join(', ');
}

/** Shown instead of the form while the server holds no release: a rollout needs one. */
function HowToMakeARelease() {
  return (
    <div class="empty-help" data-testid="no-release-help">
      <p>
        A rollout sends a <strong>release</strong> to devices, and there is no release yet. A release names
        one signed artifact per board; make one with the CLI:
      </p>
      <pre>
        <code>
          {[
            'npx boardfleet artifact push app.tar --kind app-bundle --version 1.0.0 --board rpi-4b',
            '# → Stored app 1.0.0 as art-3f9c…',
            'npx boardfleet release create app-1.0.0 --artifact rpi-4b=art-3f9c…',
          ].join('\n')}
        </code>
      </pre>
      <p class="hint">
        Or build an image or firmware on the <Link href="/builds">Builds &amp; artifacts</Link> page, then
        make a release from its artifact. Reload this page once the release exists.
      </p>
    </div>
  );
}

interface WaveRow {
  name: string;
  percent: string;
  soakSeconds: string;
  successThresholdPercent: string;
  errorThresholdPercent: string;
  notifyRatePerMinute: string;
  requiresApproval: boolean;
}

const newWave = (percent: string): WaveRow => ({
  name: '',
  percent,
  soakSeconds: '60',
  successThresholdPercent: '100',
  errorThresholdPercent: '10',
  notifyRatePerMinute: '',
  requiresApproval: false,
});

const list = (text: string) =>
  text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);

function CreateRolloutForm({ releases }: { releases: Release[] }) {
  const [release, setRelease] = useState('');
  const [name, setName] = useState('');
  const [tags, setTags] = useState('');
  const [boards, setBoards] = useState('');
  const [deviceIds, setDeviceIds] = useState('');
  const [onTrip, setOnTrip] = useState<'pause' | 'abort'>('pause');
  const [waves, setWaves] = useState<WaveRow[]>([newWave('50'), newWave('100')]);
  const [preview, setPreview] = useState<RolloutPreview | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const chosenRelease = release || releases[0]?.name || '';
  const body = () => {
    const target = {
      ...(list(tags).length ? { tags: list(tags) } : {}),
      ...(list(boards).length ? { boards: list(boards) } : {}),
      ...(list(deviceIds).length ? { deviceIds: list(deviceIds) } : {}),
    };
    const number = (text: string) => (text.trim() === '' ? undefined : Number(text));
    return {
      ...(name.trim() ? { name: name.trim() } : {}),
      release: chosenRelease,
      target,
      onTrip,
      waves: waves.map((wave): WaveConfig => {
        const config: WaveConfig = {
          ...(wave.name.trim() ? { name: wave.name.trim() } : {}),
          percent: number(wave.percent),
          soakSeconds: number(wave.soakSeconds),
          successThresholdPercent: number(wave.successThresholdPercent),
          errorThresholdPercent: number(wave.errorThresholdPercent),
          requiresApproval: wave.requiresApproval,
        };
        const rate = number(wave.notifyRatePerMinute);
        if (rate !== undefined) config.notifyRatePerMinute = rate;
        return config;
      }),
    };
  };
  const run = async (work: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  const showPreview = () =>
    run(async () =>
      setPreview(await api<RolloutPreview>('POST', '/api/v1/rollouts/preview', { body: body() })),
    );
  const start = (event: Event) => {
    event.preventDefault();
    void run(async () => {
      const created = await api<Rollout>('POST', '/api/v1/rollouts', { body: body() });
      navigate(`/rollouts/${encodeURIComponent(created.id)}`);
    });
  };
  const edit = (index: number, change: Partial<WaveRow>) => {
    setPreview(null);
    setWaves(waves.map((wave, at) => (at === index ? { ...wave, ...change } : wave)));
  };
  // Any change to what the rollout would do makes the last preview stale.
  const field = (set: (value: string) => void) => (event: Event) => {
    setPreview(null);
    set((event.currentTarget as HTMLInputElement).value);
  };

  return (
    <form class="rollout-form" onSubmit={start} aria-label="New rollout">
      <div class="grid">
        <label>
          Release
          <select value={chosenRelease} onChange={field(setRelease)} required>
            {releases.map((item) => (
              <option key={item.id} value={item.name}>
                {item.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Name (optional)
          <input value={name} onInput={field(setName)} />
        </label>
        <label>
          Target tags (comma-separated)
          <input value={tags} onInput={field(setTags)} placeholder="lab, kitchen" />
        </label>
        <label>
          Target boards
          <input value={boards} onInput={field(setBoards)} placeholder="rpi-4b" />
        </label>
        <label>
          Target device ids
          <input value={deviceIds} onInput={field(setDeviceIds)} />
        </label>
        <label>
          When a wave crosses its error threshold
          <select value={onTrip} onChange={field((value) => setOnTrip(value as 'pause' | 'abort'))}>
            <option value="pause">pause the rollout</option>
            <option value="abort">abort the rollout</option>
          </select>
        </label>
      </div>
      <fieldset>
        <legend>Waves</legend>
        {waves.map((wave, index) => (
          <div class="wave-row" key={index} role="group" aria-label={`Wave ${index + 1}`}>
            <strong class="wave-title">Wave {index + 1}</strong>
            <label>
              Name
              <input value={wave.name} onInput={(e) => edit(index, { name: e.currentTarget.value })} />
            </label>
            <label>
              Reach % of target
              <input
                type="number"
                min={0}
                max={100}
                value={wave.percent}
                onInput={(e) => edit(index, { percent: e.currentTarget.value })}
              />
            </label>
            <label>
              Soak (s)
              <input
                type="number"
                min={0}
                value={wave.soakSeconds}
                onInput={(e) => edit(index, { soakSeconds: e.currentTarget.value })}
              />
            </label>
            <label>
              Success threshold %
              <input
                type="number"
                min={0}
                max={100}
                value={wave.successThresholdPercent}
                onInput={(e) => edit(index, { successThresholdPercent: e.currentTarget.value })}
              />
            </label>
            <label>
              Error threshold %
              <input
                type="number"
                min={0}
                max={100}
                value={wave.errorThresholdPercent}
                onInput={(e) => edit(index, { errorThresholdPercent: e.currentTarget.value })}
              />
            </label>
            <label>
              Rate (devices/min)
              <input
                type="number"
                min={1}
                placeholder="no limit"
                value={wave.notifyRatePerMinute}
                onInput={(e) => edit(index, { notifyRatePerMinute: e.currentTarget.value })}
              />
            </label>
            <label class="check">
              <input
                type="checkbox"
                checked={wave.requiresApproval}
                onChange={(e) => edit(index, { requiresApproval: e.currentTarget.checked })}
              />
              Needs approval
            </label>
            {waves.length > 1 && (
              <button
                type="button"
                class="secondary"
                onClick={() => {
                  setPreview(null);
                  setWaves(waves.filter((_, at) => at !== index));
                }}
                aria-label={`Remove wave ${index + 1}`}
              >
                Remove
              </button>
            )}
          </div>
        ))}
        <button
          type="button"
          class="secondary"
          disabled={waves.length >= 20}
          onClick={() => {
            setPreview(null);
            setWaves([...waves, newWave('100')]);
          }}
        >
          Add wave
        </button>
      </fieldset>
      {preview && (
        <div class="preview" data-testid="rollout-preview" aria-live="polite">
          <p>
            {preview.targetDevices} device(s) match the target; release {preview.release}.
          </p>
          <ol>
            {preview.waves.map((wave) => (
              <li key={wave.name} data-testid="preview-wave">
                {wave.name}: {wave.devices.length} device(s)
              </li>
            ))}
          </ol>
        </div>
      )}
      <ErrorMessage error={error} />
      <div class="actions">
        <button type="button" class="secondary" disabled={busy || !chosenRelease} onClick={showPreview}>
          Preview
        </button>
        <button type="submit" disabled={busy || !preview}>
          Start rollout
        </button>
      </div>
      {!preview && <p class="hint">Preview first: it shows how many devices each wave gets.</p>}
    </form>
  );
}
