import { useEffect, useRef, useState } from 'preact/hooks';
import type { DeviceLogEvents } from '../../../../../protocol/api/device-logs.ts';
import { ApiError, openEventStream } from '../api/client.ts';
import { SseParser } from '../live/sse-parser.ts';

type LogLine = DeviceLogEvents['line'];

/** Lines the view keeps; older ones scroll out (the device keeps its own ring). */
const MAX_LINES = 2_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 15_000;

/**
 * Follows a device's logs until `signal` aborts: the newest lines first, then live ones. A dropped
 * connection is opened again after the last line received, so nothing is missed or repeated.
 */
async function followLogs(
  deviceId: string,
  app: string,
  signal: AbortSignal,
  on: { line: (line: LogLine) => void; status: (status: string) => void },
): Promise<void> {
  let after: number | null = null;
  let retryMs = RETRY_MIN_MS;
  while (!signal.aborted) {
    const params = new URLSearchParams({ follow: 'true', limit: '200' });
    if (app) params.set('app', app);
    if (after !== null) params.set('after', String(after));
    try {
      const response = await openEventStream(
        `/api/v1/devices/${encodeURIComponent(deviceId)}/logs?${params}`,
        signal,
      );
      if (!response.body) throw new Error('the log stream has no body');
      retryMs = RETRY_MIN_MS;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      signal.addEventListener('abort', () => void reader.cancel(), { once: true });
      const parser = new SseParser();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const event of parser.push(value)) {
          const data = JSON.parse(event.data) as unknown;
          if (event.event === 'line') {
            after = (data as LogLine).seq;
            on.line(data as LogLine);
          } else if (event.event === 'caught-up') on.status('following');
          else if (event.event === 'device')
            on.status((data as DeviceLogEvents['device']).online ? 'following' : 'device offline, waiting');
          else if (event.event === 'error') {
            on.status(`stopped: ${(data as DeviceLogEvents['error']).message}`);
            return;
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status !== 503) {
        on.status(`stopped: ${error.message}`);
        return;
      }
    }
    if (signal.aborted) return;
    on.status('reconnecting');
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

/** The device's live log: every workload's output (or one app's), following as it comes, with pause. */
export function DeviceLogsPanel({ id }: { id: string }) {
  const [draft, setDraft] = useState('');
  const [app, setApp] = useState('');
  const [lines, setLines] = useState<LogLine[]>([]);
  const [status, setStatus] = useState('connecting');
  const [paused, setPaused] = useState(false);
  const received = useRef<LogLine[]>([]);
  const pausedRef = useRef(false);
  const frame = useRef<number | null>(null);
  const view = useRef<HTMLPreElement>(null);

  // Many lines a second become one render a frame.
  const show = () => {
    if (frame.current !== null) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = null;
      setLines([...received.current]);
    });
  };

  useEffect(() => {
    const controller = new AbortController();
    received.current = [];
    setLines([]);
    setStatus('connecting');
    void followLogs(id, app, controller.signal, {
      line: (line) => {
        received.current.push(line);
        if (received.current.length > MAX_LINES)
          received.current.splice(0, received.current.length - MAX_LINES);
        if (!pausedRef.current) show();
      },
      status: setStatus,
    });
    return () => {
      controller.abort();
      if (frame.current !== null) cancelAnimationFrame(frame.current);
      frame.current = null;
    };
  }, [id, app]);

  // Stay at the bottom while following, unless the reader scrolled up to read.
  useEffect(() => {
    const element = view.current;
    if (element && !paused) element.scrollTop = element.scrollHeight;
  }, [lines, paused]);

  const togglePause = () => {
    pausedRef.current = !paused;
    setPaused(!paused);
    if (paused) show();
  };

  return (
    <div data-testid="device-logs">
      <form
        class="filters"
        onSubmit={(event) => {
          event.preventDefault();
          setApp(draft.trim());
        }}
      >
        <label>
          App{' '}
          <input
            value={draft}
            placeholder="every workload"
            aria-label="Only the lines of this app"
            onInput={(event) => setDraft((event.target as HTMLInputElement).value)}
          />
        </label>{' '}
        <button type="submit">Show</button>{' '}
        <button type="button" onClick={togglePause} aria-pressed={paused}>
          {paused ? 'Resume' : 'Pause'}
        </button>{' '}
        <span class="muted" data-testid="device-logs-status">
          {paused ? 'paused' : status}
        </span>
      </form>
      <pre class="log-view" ref={view} tabIndex={0} aria-label="Device log" data-testid="device-log-lines">
        {lines.length === 0 ? (
          <span class="muted">No lines yet.</span>
        ) : (
          lines.map((line) => (
            <div key={line.seq} class={line.stream === 'stderr' ? 'stderr' : undefined}>
              {new Date(line.at).toISOString().slice(11, 23)} {line.source} {line.text}
            </div>
          ))
        )}
      </pre>
    </div>
  );
}
