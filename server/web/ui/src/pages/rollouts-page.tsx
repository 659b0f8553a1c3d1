import { useState } from 'preact/hooks';
import { api } from '../api/client.ts';
import { session } from '../api/session.ts';
import type { Release, Rollout, RolloutPreview, WaveConfig } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../components/format.ts';
import { Link, navigate } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';

export function RolloutsPage() {
  const rollouts = useSnapshot(
    (signal) => api<{ rollouts: Rollout[] }>('GET', '/api/v1/rollouts', { signal }),
    [],
  );
  useLiveEvent('rollout', () => rollouts.reloadSoon(), [rollouts.reloadSoon]);
  return (
    <section>
      <h1>Rollouts</h1>
      <ErrorMessage error={rollouts.error} />
      {rollouts.data &&
        (rollouts.data.rollouts.length === 0 ? (
          <p class="muted">No rollout yet.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Rollout</th>
                  <th scope="col">State</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {rollouts.data.rollouts.map((rollout) => (
                  <tr key={rollout.id} data-testid="rollout-row">
                    <td>
                      <Link href={`/rollouts/${encodeURIComponent(rollout.id)}`}>{rollout.name}</Link>
                      <div class="id">{rollout.id}</div>
                    </td>
                    <td>
                      <span class={`state state-${rollout.state}`}>{rollout.state}</span>
                    </td>
                    <td>{rollout.reason ?? ''}</td>
                    <td>{formatTime(rollout.createdAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      <h2>New rollout</h2>
      {session.canOperate() ? (
        <CreateRolloutForm />
      ) : (
        <p class="muted">Starting a rollout needs the operator role.</p>
      )}
    </section>
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

function CreateRolloutForm() {
  const releases = useSnapshot(
    (signal) => api<{ releases: Release[] }>('GET', '/api/v1/releases?limit=200', { signal }),
    [],
  );
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

  const chosenRelease = release || releases.data?.releases[0]?.name || '';
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
      <ErrorMessage error={releases.error} />
      <div class="grid">
        <label>
          Release
          <select value={chosenRelease} onChange={field(setRelease)} required>
            {releases.data?.releases.map((item) => (
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
              >
                Remove wave {index + 1}
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
