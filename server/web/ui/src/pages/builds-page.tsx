import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, downloadArtifact, openEventStream, query } from '../api/client.ts';
import { useOperator } from '../api/session.ts';
import { importFleetKey, type SignatureStatus, verifyManifestSignature } from '../api/signature.ts';
import type { Artifact, BuildJob } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatBytes, formatTime } from '../components/format.ts';
import { navigate, useLocation } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';
import { SseParser } from '../live/sse-parser.ts';

export function BuildsPage() {
  const { search } = useLocation();
  const selected = search.get('build');
  const builds = useSnapshot(
    (signal) => api<{ builds: BuildJob[] }>('GET', '/api/v1/builds?limit=50', { signal }),
    [],
  );
  const artifacts = useSnapshot(
    (signal) => api<{ artifacts: Artifact[] }>('GET', '/api/v1/artifacts?limit=200', { signal }),
    [],
  );
  useLiveEvent(
    'build',
    ({ job }) => {
      builds.reloadSoon();
      if (job.state === 'succeeded') artifacts.reloadSoon();
    },
    [builds.reloadSoon, artifacts.reloadSoon],
  );
  const select = (id: string) => navigate(`/builds${query({ build: id })}`);

  return (
    <section>
      <h1>Builds & artifacts</h1>
      <StartBuildForm onStarted={(job) => select(job.id)} />
      <h2>Builds</h2>
      <ErrorMessage error={builds.error} />
      {builds.data &&
        (builds.data.builds.length === 0 ? (
          <p class="muted">No build yet.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Build</th>
                  <th scope="col">Recipe</th>
                  <th scope="col">Board</th>
                  <th scope="col">State</th>
                  <th scope="col">Step</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {builds.data.builds.map((job) => (
                  <tr key={job.id} aria-selected={job.id === selected} data-testid="build-row">
                    <td>
                      <button type="button" class="link" onClick={() => select(job.id)}>
                        {job.id}
                      </button>
                    </td>
                    <td>{job.recipe}</td>
                    <td>{job.board}</td>
                    <td>
                      <span class={`state build-${job.state}`}>{job.state}</span>
                      {job.state === 'running' && ` ${Math.round(job.progress * 100)}%`}
                    </td>
                    <td class="text">{job.error ?? job.step ?? ''}</td>
                    <td>{formatTime(job.createdAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      {selected && <BuildDetail key={selected} id={selected} />}
      <h2>Artifacts</h2>
      <ErrorMessage error={artifacts.error} />
      {artifacts.data && <ArtifactTable artifacts={artifacts.data.artifacts} />}
    </section>
  );
}

function StartBuildForm({ onStarted }: { onStarted: (job: BuildJob) => void }) {
  const operator = useOperator();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const canOperate = operator !== null && operator.role !== 'viewer';
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    setBusy(true);
    setError(null);
    try {
      const job = await api<BuildJob>('POST', '/api/v1/builds', {
        body: {
          recipe: String(form.get('recipe') ?? '').trim(),
          board: String(form.get('board') ?? '').trim(),
        },
      });
      onStarted(job);
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="filters" onSubmit={submit} aria-label="Start a build">
      <label>
        Recipe
        <input name="recipe" required placeholder="pi-minimal" />
      </label>
      <label>
        Board
        <input name="board" required placeholder="rpi-4b" />
      </label>
      <button type="submit" disabled={!canOperate || busy}>
        Start build
      </button>
      {!canOperate && <span class="hint">Starting a build needs the operator role.</span>}
      <ErrorMessage error={error} />
    </form>
  );
}

/** A build's log, followed live through its event stream (which replays from the start). */
function BuildDetail({ id }: { id: string }) {
  const [job, setJob] = useState<BuildJob | null>(null);
  const [lines, setLines] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const logRef = useRef<HTMLPreElement>(null);

  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    // The event id is the log offset: a stream that drops resumes after the last line it gave.
    let lastEventId: string | null = null;
    let ended = false;
    const followOnce = async () => {
      const response = await openEventStream(
        `/api/v1/builds/${encodeURIComponent(id)}/events`,
        signal,
        lastEventId ? { 'last-event-id': lastEventId } : {},
      );
      if (!response.body) throw new Error('the build event stream has no body');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        const added: string[] = [];
        for (const event of parser.push(value)) {
          if (event.id) lastEventId = event.id;
          if (event.event === 'log') added.push(JSON.parse(event.data) as string);
          else if (event.event === 'status') setJob(JSON.parse(event.data) as BuildJob);
          else if (event.event === 'end') ended = true;
        }
        if (added.length > 0) setLines((previous) => [...previous, ...added]);
      }
    };
    const follow = async () => {
      while (!ended && !signal.aborted) {
        try {
          await followOnce();
          setError(null);
        } catch (failure) {
          if (signal.aborted || (failure instanceof ApiError && failure.status < 500)) throw failure;
          setError(
            `the log stream dropped (${failure instanceof Error ? failure.message : String(failure)}); retrying`,
          );
        }
        if (!ended) await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
    };
    follow().catch((failure: unknown) => {
      if (!signal.aborted) setError(failure instanceof Error ? failure.message : String(failure));
    });
    return () => controller.abort();
  }, [id]);

  useEffect(() => {
    const element = logRef.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, [lines.length]);

  return (
    <div class="build-detail">
      <h3>
        Build {id}{' '}
        {job && (
          <span class={`state build-${job.state}`} data-testid="build-state">
            {job.state}
          </span>
        )}
      </h3>
      <ErrorMessage error={error} />
      {job?.error && <p class="error">{job.error}</p>}
      <pre class="log-view" ref={logRef} data-testid="build-log" tabIndex={0} aria-label="Build log">
        {lines.join('\n')}
      </pre>
      {job && job.outputs.length > 0 && (
        <>
          <h4>Outputs</h4>
          <ul class="outputs">
            {job.outputs.map((output) => (
              <li key={output.artifactId}>
                <DownloadButton artifactId={output.artifactId} fileName={`${output.name}-${output.version}`}>
                  Download {output.role}
                </DownloadButton>{' '}
                {output.name} {output.version} ({formatBytes(output.size)})
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

function DownloadButton(props: { artifactId: string; fileName: string; children: ComponentChildren }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <>
      <button
        type="button"
        class="secondary"
        disabled={busy}
        onClick={() => {
          setBusy(true);
          setError(null);
          downloadArtifact(props.artifactId, props.fileName)
            .catch((failure: unknown) =>
              setError(failure instanceof Error ? failure.message : String(failure)),
            )
            .finally(() => setBusy(false));
        }}
      >
        {props.children}
      </button>
      {error && <span class="error"> {error}</span>}
    </>
  );
}

const SIGNATURE_TEXT: Record<SignatureStatus, string> = {
  valid: 'signed ✓',
  invalid: 'BAD SIGNATURE',
  unverifiable: 'not checked (no Ed25519 in this browser)',
};

function ArtifactTable({ artifacts }: { artifacts: Artifact[] }) {
  const [statuses, setStatuses] = useState<Record<string, SignatureStatus>>({});
  useEffect(() => {
    let cancelled = false;
    void (async () => {
      const { publicKeyPem } = await api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key');
      const key = await importFleetKey(publicKeyPem);
      const entries = await Promise.all(
        artifacts.map(
          async (artifact) =>
            [artifact.id, await verifyManifestSignature(key, artifact.manifest, artifact.signature)] as const,
        ),
      );
      if (!cancelled) setStatuses(Object.fromEntries(entries));
    })();
    return () => {
      cancelled = true;
    };
  }, [artifacts]);

  if (artifacts.length === 0) return <p class="muted">No artifact yet.</p>;
  return (
    <div class="table-wrap">
      <table data-testid="artifacts">
        <thead>
          <tr>
            <th scope="col">Artifact</th>
            <th scope="col">Version</th>
            <th scope="col">Kind</th>
            <th scope="col">Boards</th>
            <th scope="col">Size</th>
            <th scope="col">Signature</th>
            <th scope="col">Download</th>
          </tr>
        </thead>
        <tbody>
          {artifacts.map((artifact) => {
            const status = statuses[artifact.id];
            return (
              <tr key={artifact.id} data-testid="artifact-row">
                <td>
                  {artifact.name}
                  <div class="id">{artifact.id}</div>
                </td>
                <td>{artifact.version}</td>
                <td>{artifact.kind}</td>
                <td>{artifact.boards.join(', ')}</td>
                <td>{formatBytes(artifact.size)}</td>
                <td data-testid="signature-status" data-status={status ?? 'checking'}>
                  {status ? SIGNATURE_TEXT[status] : 'checking…'}
                </td>
                <td>
                  <DownloadButton artifactId={artifact.id} fileName={`${artifact.name}-${artifact.version}`}>
                    Download
                  </DownloadButton>
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
