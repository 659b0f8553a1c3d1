import { api, query } from '../api/client.ts';
import type { Device, DevicePage, FleetSummary } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatAgo } from '../components/format.ts';
import { Link, navigate, useLocation } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';
import { useLiveEvent } from '../live/live-stream.ts';

const PAGE_SIZE = 50;
const FILTERS = ['q', 'tag', 'board', 'online', 'version', 'sort'] as const;
type Filters = Record<(typeof FILTERS)[number], string>;

export function FleetPage() {
  const { search } = useLocation();
  const filters = Object.fromEntries(FILTERS.map((key) => [key, search.get(key) ?? ''])) as Filters;
  const page = Math.max(0, Number(search.get('page') ?? 0) || 0);

  const summary = useSnapshot((signal) => api<FleetSummary>('GET', '/api/v1/fleet/summary', { signal }), []);
  const devices = useSnapshot(
    (signal) =>
      api<DevicePage>(
        'GET',
        `/api/v1/devices${query({ ...filters, limit: PAGE_SIZE, offset: page * PAGE_SIZE })}`,
        { signal },
      ),
    [search.toString()],
  );
  // Presence changes the counts and possibly which rows match: both are refetched, at most once a second.
  useLiveEvent(
    'presence',
    () => {
      summary.reloadSoon();
      devices.reloadSoon();
    },
    [summary.reloadSoon, devices.reloadSoon],
  );

  const setParams = (changes: Partial<Filters> & { page?: number }) => {
    const next = new URLSearchParams(search);
    for (const [key, value] of Object.entries(changes)) {
      if (value === '' || value === 0 || value === undefined) next.delete(key);
      else next.set(key, String(value));
    }
    if (!('page' in changes)) next.delete('page');
    const text = next.toString();
    navigate(text ? `/?${text}` : '/');
  };

  return (
    <section>
      <h1>Fleet</h1>
      <ErrorMessage error={summary.error} />
      {summary.data && <SummaryPanel summary={summary.data} />}
      <h2>Devices</h2>
      <DeviceFilters key={search.toString()} filters={filters} onChange={setParams} />
      <ErrorMessage error={devices.error} />
      {devices.data && <DeviceTable page={devices.data} />}
      {devices.data && <Pager page={devices.data} onPage={(index) => setParams({ page: index })} />}
    </section>
  );
}

function SummaryPanel({ summary }: { summary: FleetSummary }) {
  const sorted = (counts: Record<string, number>) => Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return (
    <div class="summary" data-testid="fleet-summary">
      <dl class="counts">
        <div>
          <dt>Devices</dt>
          <dd data-testid="count-total">{summary.total}</dd>
        </div>
        <div class="ok">
          <dt>Online</dt>
          <dd data-testid="count-online">{summary.online}</dd>
        </div>
        <div class="muted">
          <dt>Offline</dt>
          <dd data-testid="count-offline">{summary.offline}</dd>
        </div>
        <div class={summary.failingHealth > 0 ? 'bad' : ''}>
          <dt>Failing health</dt>
          <dd data-testid="count-failing">{summary.failingHealth}</dd>
        </div>
      </dl>
      <div class="breakdowns">
        <Breakdown
          title="By board"
          entries={sorted(summary.byBoard)}
          filterHref={(board) => (board === 'unknown' ? null : `/?board=${encodeURIComponent(board)}`)}
        />
        <Breakdown
          title="By running version"
          entries={sorted(summary.byVersion)}
          filterHref={(version) => (version === 'none' ? null : `/?version=${encodeURIComponent(version)}`)}
        />
        {summary.failingDevices.length > 0 && (
          <div>
            <h3>Failing health</h3>
            <ul class="failing">
              {summary.failingDevices.map((device) => (
                <li key={device.id}>
                  <Link href={`/devices/${encodeURIComponent(device.id)}`}>{device.name}</Link>:{' '}
                  {device.reason}
                </li>
              ))}
            </ul>
          </div>
        )}
      </div>
    </div>
  );
}

/** Counts by a key; a key links to the device table filtered by it (`filterHref` null: no filter fits). */
function Breakdown({
  title,
  entries,
  filterHref,
}: {
  title: string;
  entries: [string, number][];
  filterHref: (key: string) => string | null;
}) {
  return (
    <div>
      <h3>{title}</h3>
      {entries.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <ul class="breakdown">
          {entries.slice(0, 8).map(([name, count]) => (
            <li key={name}>
              <span>{filterHref(name) ? <Link href={filterHref(name) as string}>{name}</Link> : name}</span>{' '}
              <strong>{count}</strong>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function DeviceFilters({
  filters,
  onChange,
}: {
  filters: Filters;
  onChange: (changes: Partial<Filters>) => void;
}) {
  // Text fields apply on Enter (or Apply), lists at once: one request per search, not per keystroke.
  const submit = (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    onChange(Object.fromEntries(FILTERS.map((key) => [key, String(form.get(key) ?? '').trim()])));
  };
  const submitNow = (event: Event) => (event.currentTarget as HTMLSelectElement).form?.requestSubmit();
  return (
    <form class="filters" onSubmit={submit} role="search">
      <label>
        Search
        <input name="q" type="search" placeholder="name or id" defaultValue={filters.q} />
      </label>
      <label>
        Tag
        <input name="tag" defaultValue={filters.tag} />
      </label>
      <label>
        Board
        <input name="board" defaultValue={filters.board} />
      </label>
      <label>
        Version
        <input name="version" defaultValue={filters.version} />
      </label>
      <label>
        Status
        <select name="online" value={filters.online} onChange={submitNow}>
          <option value="">any</option>
          <option value="true">online</option>
          <option value="false">offline</option>
        </select>
      </label>
      <label>
        Sort
        <select name="sort" value={filters.sort} onChange={submitNow}>
          <option value="">registered</option>
          <option value="name">name</option>
          <option value="lastSeen">last seen</option>
        </select>
      </label>
      <button type="submit">Apply</button>
    </form>
  );
}

function DeviceTable({ page }: { page: DevicePage }) {
  if (page.devices.length === 0) return <p class="muted">No device matches.</p>;
  return (
    <div class="table-wrap">
      <table class="devices">
        <caption class="visually-hidden">Devices</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Status</th>
            <th scope="col">Board</th>
            <th scope="col">Version</th>
            <th scope="col">Health</th>
            <th scope="col" class="wide-only">
              Tags
            </th>
            <th scope="col" class="wide-only">
              Last seen
            </th>
          </tr>
        </thead>
        <tbody>
          {page.devices.map((device) => (
            <DeviceRow key={device.id} device={device} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function DeviceRow({ device }: { device: Device }) {
  return (
    <tr data-testid="device-row" data-device-id={device.id}>
      <td>
        <Link href={`/devices/${encodeURIComponent(device.id)}`}>{device.name}</Link>
        <div class="id">{device.id}</div>
      </td>
      <td>
        <OnlineBadge online={device.online} />
      </td>
      <td>{device.inventory?.board ?? device.board ?? '—'}</td>
      <td>{device.runningVersion ?? '—'}</td>
      <td data-testid="health">
        <HealthText device={device} />
      </td>
      <td class="wide-only">{device.tags.join(', ')}</td>
      <td class="wide-only">{formatAgo(device.lastSeenAt)}</td>
    </tr>
  );
}

export function OnlineBadge({ online }: { online: boolean }) {
  return (
    <span class={`badge ${online ? 'online' : 'offline'}`} data-testid="online-badge">
      {online ? 'online' : 'offline'}
    </span>
  );
}

/** The latest heartbeat's verdict, and none for an offline device: its last heartbeat says nothing about now. */
export function HealthText({ device }: { device: Pick<Device, 'online' | 'healthProblem'> }) {
  if (!device.online) {
    return (
      <span class="muted" title="offline: its last heartbeat says nothing about now">
        unknown
      </span>
    );
  }
  if (device.healthProblem) return <span class="problem">{device.healthProblem}</span>;
  return <>ok</>;
}

function Pager({ page, onPage }: { page: DevicePage; onPage: (index: number) => void }) {
  const index = Math.floor(page.offset / page.limit);
  const pages = Math.max(1, Math.ceil(page.total / page.limit));
  const first = page.total === 0 ? 0 : page.offset + 1;
  return (
    <nav class="pager" aria-label="Pages">
      <button type="button" class="secondary" disabled={index === 0} onClick={() => onPage(index - 1)}>
        Previous
      </button>
      <span>
        {first}–{page.offset + page.devices.length} of {page.total} (page {index + 1} of {pages})
      </span>
      <button type="button" class="secondary" disabled={index + 1 >= pages} onClick={() => onPage(index + 1)}>
        Next
      </button>
    </nav>
  );
}
