import { useEffect, useRef, useState } from 'preact/hooks';
import type { DeviceLogEvents } from '../../../../../protocol/api/device-logs.ts';
import { DEFAULT_BOARD_BAUD } from '../../../../../protocol/device-logs.ts';
import { api, ApiError, openEventStream } from '../api/client.ts';
import type { DeviceDetails } from '../api/types.ts';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';
import { SseParser } from '../live/sse-parser.ts';

type LogLine = DeviceLogEvents['line'];

/**
 * What the view follows: one app's lines (or every workload's), and an attached board's serial
 * output read at `baud`. With a board and no app, only the board; with both, both (as the API does).
 */
interface LogFilter {
  app: string;
  board: string;
  baud: number;
}

const EVERY_WORKLOAD: LogFilter = { app: '', board: '', baud: DEFAULT_BOARD_BAUD };

/** The query of the log stream for a filter, resuming after `after` when a line was received. */
function logStreamQuery(filter: LogFilter, after: number | null): URLSearchParams {
  const params = new URLSearchParams({ follow: 'true', limit: '200' });
  if (filter.app) params.set('app', filter.app);
  if (filter.board) {
    params.set('board', filter.board);
    params.set('baud', String(filter.baud));
  }
  if (after !== null) params.set('after', String(after));
  return params;
}

/** Lines the view keeps; older ones scroll out (the device keeps its own ring). */
const MAX_LINES = 2_000;
const RETRY_MIN_MS = 1_000;
const RETRY_MAX_MS = 15_000;

/**
 * Follows a device's logs until `signal` aborts: the newest lines first, then live ones. A dropped
 * connection is opened again after the last line received, so nothing is missed or repeated.
 * A board read at another speed by another watch (`conflict`) is waited for the same way: a watch
 * is a lease that ends, and the one this view just closed to change the speed may still hold the
 * port for a moment.
 */
async function followLogs(
  deviceId: string,
  filter: LogFilter,
  signal: AbortSignal,
  on: { line: (line: LogLine) => void; status: (status: string) => void },
): Promise<void> {
  let after: number | null = null;
  let retryMs = RETRY_MIN_MS;
  while (!signal.aborted) {
    const params = logStreamQuery(filter, after);
    let waitingFor: string | null = null;
    try {
      const response = await openEventStream(
        `/api/v1/devices/${encodeURIComponent(deviceId)}/logs?${params}`,
        signal,
      );
      if (!response.body) throw new Error('the log stream has no body');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      signal.addEventListener('abort', () => void reader.cancel(), { once: true });
      const parser = new SseParser();
      reading: for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const event of parser.push(value)) {
          const data = JSON.parse(event.data) as unknown;
          if (event.event === 'line') {
            after = (data as LogLine).seq;
            on.line(data as LogLine);
          } else if (event.event === 'caught-up') {
            // Streaming again: a later drop is retried soon.
            retryMs = RETRY_MIN_MS;
            on.status('following');
          } else if (event.event === 'device')
            on.status((data as DeviceLogEvents['device']).online ? 'following' : 'device offline, waiting');
          else if (event.event === 'error') {
            const { code, message } = data as DeviceLogEvents['error'];
            if (code !== 'conflict') {
              on.status(`stopped: ${message}`);
              return;
            }
            waitingFor = message;
            break reading;
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
    on.status(waitingFor ? `waiting: ${waitingFor}` : 'reconnecting');
    await new Promise((resolve) => setTimeout(resolve, retryMs));
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

/** The boards the device's inventory reports attached: each one's serial output can be followed. */
function useAttachedBoards(id: string) {
  const device = useSnapshot(
    (signal) => api<DeviceDetails>('GET', `/api/v1/devices/${encodeURIComponent(id)}`, { signal }),
    [id],
  );
  // A device reports its inventory when it connects: a board plugged in meanwhile shows up then.
  useLiveEvent(
    'presence',
    (event) => {
      if (event.deviceId === id) device.reloadSoon();
    },
    [id, device.reloadSoon],
  );
  return device.data?.inventory?.attachedBoards ?? [];
}

/**
 * The device's live log: every workload's output (or one app's), or an attached board's serial
 * output, following as it comes, with pause.
 */
export function DeviceLogsPanel({ id }: { id: string }) {
  const boards = useAttachedBoards(id);
  const [draft, setDraft] = useState(EVERY_WORKLOAD);
  const [filter, setFilter] = useState(EVERY_WORKLOAD);
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
    void followLogs(id, filter, controller.signal, {
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
  }, [id, filter]);

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
        class="filters log-filters"
        onSubmit={(event) => {
          event.preventDefault();
          const next = { ...draft, app: draft.app.trim() };
          const same = next.app === filter.app && next.board === filter.board && next.baud === filter.baud;
          if (!same) setFilter(next);
        }}
      >
        {boards.length > 0 && (
          <label>
            Source
            <select
              value={draft.board}
              onChange={(event) => setDraft({ ...draft, board: event.currentTarget.value })}
            >
              <option value="">Apps and agent</option>
              {boards.map((board) => (
                <option key={board.port} value={board.port}>
                  Board on {board.port}
                  {board.board ? ` (${board.board})` : ''}
                </option>
              ))}
            </select>
          </label>
        )}
        {draft.board && (
          <label>
            Baud
            <input
              type="number"
              required
              min={300}
              max={4_000_000}
              value={draft.baud}
              aria-label="The board's serial speed in baud"
              onInput={(event) => setDraft({ ...draft, baud: event.currentTarget.valueAsNumber })}
            />
          </label>
        )}
        <label>
          App
          <input
            value={draft.app}
            placeholder={draft.board ? 'none: the board only' : 'every workload'}
            aria-label="Only the lines of this app"
            onInput={(event) => setDraft({ ...draft, app: event.currentTarget.value })}
          />
        </label>
        <div class="log-actions">
          <button type="submit">Show</button>{' '}
          <button type="button" onClick={togglePause} aria-pressed={paused}>
            {paused ? 'Resume' : 'Pause'}
          </button>{' '}
          <span class="muted" data-testid="device-logs-status">
            {paused ? 'paused' : status}
          </span>
        </div>
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
