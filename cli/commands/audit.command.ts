import type { Command } from 'commander';
import type { AuditEntry, AuditLog } from '../../protocol/api/audit.ts';
import { parseDuration } from '../../protocol/api/token-expiry.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatTime, printJson, printTable } from '../output.ts';

/** `2026-12-01`, `2026-12-01T14:00`, `2026-12-01 14:00:27.5`, each with an optional zone (`Z`, `+01:00`). */
const ISO_TIME = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?(Z|[+-]\d{2}:\d{2})?$/;

/**
 * `--since` in ms since the epoch: a duration back from `now` (`30m`, `2h`, `7d`) or an ISO date or
 * time. A time without a zone is UTC, as the CLI prints times, so one copied from the table works.
 */
export function sinceTime(text: string, now: number): number {
  const duration = parseDuration(text);
  if (duration !== null) return now - duration;
  const match = ISO_TIME.exec(text.trim());
  const at = match ? Date.parse(`${match[1]}T${match[2] ?? '00:00'}${match[3] ?? 'Z'}`) : Number.NaN;
  if (at >= 0) return at;
  throw new BoardfleetError(
    'invalid-option',
    `--since ${text}: use a duration back from now (30m, 2h, 7d) or an ISO date or time (2026-12-01, 2026-12-01T14:00, UTC unless it names a zone)`,
  );
}

function entryRow(entry: AuditEntry): Record<string, string> {
  return {
    time: formatTime(entry.at, 'seconds'),
    actor: entry.via === 'session' ? `${entry.actor} (dashboard)` : entry.actor,
    action: entry.action,
    target: entry.target ?? '-',
    detail: entry.detail ?? '-',
    outcome: entry.outcome === 'ok' ? 'ok' : `failed: ${entry.reason ?? 'no reason given'}`,
  };
}

export function register(program: Command): void {
  program
    .command('audit')
    .description('The audit log: who did what to what, when, and how it ended')
    .option('--since <time>', 'entries from then on: 30m, 2h, 7d back from now, or an ISO date or time (UTC)')
    .option(
      '--actor <name>',
      "entries by this operator token, by its name or id (a dashboard session's is its token's)",
    )
    .option('--limit <n>', 'at most this many, newest first', '100')
    .option('--json', 'machine-readable output')
    .addHelpText(
      'after',
      `
Entries are never changed or deleted; times are UTC.

Examples:
  boardfleet audit --since 2h
  boardfleet audit --actor ci --since 2026-12-01
  boardfleet audit --since 7d --json`,
    )
    .action(async (options: { since?: string; actor?: string; limit: string; json?: boolean }) => {
      const query = new URLSearchParams({ limit: options.limit });
      if (options.since !== undefined) query.set('since', String(sinceTime(options.since, Date.now())));
      if (options.actor !== undefined) query.set('actor', options.actor);
      const { entries } = await ApiClient.fromEnvironment().request<AuditLog>(
        'GET',
        `/api/v1/audit?${query}`,
      );
      if (options.json) return printJson(entries);
      printTable(entries.map(entryRow), ['time', 'actor', 'action', 'target', 'detail', 'outcome']);
    });
}
