import { api, query } from '../api/client.ts';
import type { AuditEntry, AuditLog } from '../api/types.ts';
import { ErrorMessage } from '../components/error-message.tsx';
import { formatTime } from '../components/format.ts';
import { Link, navigate, useLocation } from '../components/router.tsx';
import { useSnapshot } from '../components/use-snapshot.ts';

const LIMIT = 200;
const HOUR_MS = 3_600_000;
/** The periods the filter offers, back from now; the URL keeps the period, not a moment. */
const PERIODS = [
  { value: '', label: 'any time', ms: null },
  { value: '1h', label: 'last hour', ms: HOUR_MS },
  { value: '24h', label: 'last 24 hours', ms: 24 * HOUR_MS },
  { value: '7d', label: 'last 7 days', ms: 7 * 24 * HOUR_MS },
  { value: '30d', label: 'last 30 days', ms: 30 * 24 * HOUR_MS },
] as const;

interface Filters {
  actor: string;
  since: string;
}

export function AuditPage() {
  const { search } = useLocation();
  const filters: Filters = { actor: search.get('actor') ?? '', since: search.get('since') ?? '' };
  const period = PERIODS.find((candidate) => candidate.value === filters.since) ?? PERIODS[0];
  const log = useSnapshot(
    (signal) =>
      api<AuditLog>(
        'GET',
        `/api/v1/audit${query({
          actor: filters.actor,
          since: period.ms === null ? null : Date.now() - period.ms,
          limit: LIMIT,
        })}`,
        { signal },
      ),
    [search.toString()],
  );

  const setFilters = (changes: Filters) => {
    const next = query({ actor: changes.actor, since: changes.since });
    navigate(`/audit${next}`);
  };

  return (
    <section>
      <h1>Audit</h1>
      <p class="hint">
        Every change made through the API or this dashboard: who, when, to what, and how it ended. Entries are
        never changed or deleted.
      </p>
      <AuditFilters key={search.toString()} filters={filters} onChange={setFilters} onRefresh={log.reload} />
      <ErrorMessage error={log.error} />
      {log.data &&
        (log.data.entries.length === 0 ? (
          <p class="muted" data-testid="no-audit-entries">
            No entry matches.
          </p>
        ) : (
          <AuditTable entries={log.data.entries} />
        ))}
      {log.data?.entries.length === LIMIT && (
        <p class="hint">The newest {LIMIT} entries; narrow the period or the actor to see older ones.</p>
      )}
    </section>
  );
}

function AuditFilters({
  filters,
  onChange,
  onRefresh,
}: {
  filters: Filters;
  onChange: (filters: Filters) => void;
  onRefresh: () => void;
}) {
  // The actor applies on Enter (or Apply), the period at once: one request per search, not per keystroke.
  const submit = (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    onChange({ actor: String(form.get('actor') ?? '').trim(), since: String(form.get('since') ?? '') });
  };
  const submitNow = (event: Event) => (event.currentTarget as HTMLSelectElement).form?.requestSubmit();
  return (
    <form class="filters" onSubmit={submit} role="search">
      <label>
        Actor
        <input name="actor" placeholder="token name or id" defaultValue={filters.actor} />
      </label>
      <label>
        Period
        <select name="since" value={filters.since} onChange={submitNow}>
          {PERIODS.map((period) => (
            <option key={period.value} value={period.value}>
              {period.label}
            </option>
          ))}
        </select>
      </label>
      <button type="submit">Apply</button>
      <button type="button" class="secondary" onClick={onRefresh}>
        Refresh
      </button>
    </form>
  );
}

function AuditTable({ entries }: { entries: AuditEntry[] }) {
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">Audit log, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Actor</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            <th scope="col">Outcome</th>
            <th scope="col" class="wide-only">
              Detail
            </th>
          </tr>
        </thead>
        <tbody>
          {entries.map((entry) => (
            <AuditRow key={entry.id} entry={entry} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

function AuditRow({ entry }: { entry: AuditEntry }) {
  const href = targetHref(entry);
  return (
    <tr data-testid="audit-row" data-action={entry.action} data-outcome={entry.outcome}>
      <td>{formatTime(entry.at)}</td>
      <td>
        {entry.actor}
        {entry.via === 'session' && <span class="hint"> (dashboard)</span>}
        <div class="id">{entry.actorTokenId}</div>
      </td>
      <td>{entry.action}</td>
      <td>{entry.target === null ? '—' : href ? <Link href={href}>{entry.target}</Link> : entry.target}</td>
      <td class="text" data-testid="audit-outcome">
        <span class={`state outcome-${entry.outcome}`}>{entry.outcome}</span>
        {entry.reason && <div class="hint">{entry.reason}</div>}
      </td>
      <td class="wide-only text">{entry.detail ?? ''}</td>
    </tr>
  );
}

/** The dashboard page of what the action was done to, where it has one and it still exists. */
function targetHref(entry: AuditEntry): string | null {
  if (entry.target === null) return null;
  const target = encodeURIComponent(entry.target);
  if (entry.action.startsWith('device.') && entry.action !== 'device.delete') return `/devices/${target}`;
  if (entry.action.startsWith('rollout.')) return `/rollouts/${target}`;
  if (entry.action.startsWith('build.')) return `/builds?build=${target}`;
  return null;
}
