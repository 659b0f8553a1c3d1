import { setTimeout as delay } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import type {
  CreateRolloutInput,
  Rollout,
  RolloutList,
  RolloutPreview,
  RolloutStatus,
  WaveConfigInput,
} from '../../protocol/api/rollouts.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { type Paint, painter, printJson, printTable } from '../output.ts';
import {
  type ArtifactLabel,
  artifactLabelsOf,
  renderRolloutStatus,
  statusSignature,
} from '../rollout-view.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

const WATCH_INTERVAL_MS = 1000;

/** The view of a status, with a composite release's artifacts named (each read once per `cache`). */
async function statusView(
  api: ApiClient,
  status: RolloutStatus,
  paint: Paint,
  cache = new Map<string, ArtifactLabel>(),
): Promise<string> {
  const lookUp = (id: string) => api.request<Artifact>('GET', `/api/v1/artifacts/${encodeURIComponent(id)}`);
  return renderRolloutStatus(status, Date.now(), paint, await artifactLabelsOf(status, lookUp, cache));
}

/** `--waves 1,10,50,100` (cumulative percentages) and/or `--canary ID` as the first wave. */
function waveList(options: {
  canary: string[];
  waves: string;
  soak: string;
  errorThreshold: string;
  successThreshold: string;
  approve: boolean;
  maxParallel: string;
  rate?: string;
}): WaveConfigInput[] {
  const shared = {
    soakSeconds: Number(options.soak),
    errorThresholdPercent: Number(options.errorThreshold),
    successThresholdPercent: Number(options.successThreshold),
    maxParallel: Number(options.maxParallel),
    ...(options.rate ? { notifyRatePerMinute: Number(options.rate) } : {}),
  };
  const percentages = options.waves.split(',').map(Number);
  if (percentages.some((p) => !(p > 0 && p <= 100)))
    throw new BoardfleetError('invalid-arguments', `--waves ${options.waves}: percentages between 1 and 100`);
  // Cumulative: a share smaller than the one before would leave devices out of every wave.
  if (percentages.some((p, index) => index > 0 && p <= (percentages[index - 1] as number)))
    throw new BoardfleetError(
      'invalid-arguments',
      `--waves ${options.waves}: cumulative shares, each larger than the one before (e.g. 10,50,100)`,
    );
  return [
    ...(options.canary.length > 0 ? [{ name: 'canary', canary: options.canary, ...shared }] : []),
    ...percentages.map((percent, index) => ({
      name: `${percent}%`,
      percent,
      ...shared,
      // Every wave after the first waits for an operator when --approve is given.
      requiresApproval: options.approve && (index > 0 || options.canary.length > 0),
    })),
  ];
}

export function register(program: Command): void {
  const rollout = program
    .command('rollout')
    .description('Staged rollouts of a release to the fleet')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet rollout create app-1.2.0 --tag lab --waves 10,50,100 --dry-run
  boardfleet rollout create app-1.2.0 --tag lab --canary dev-3f9c… --waves 50,100 --approve
  boardfleet rollout list
  boardfleet rollout status ro-… --watch
  boardfleet rollout approve ro-…
  boardfleet rollout pause ro-… && boardfleet rollout resume ro-…
  boardfleet rollout abort ro-…`,
    );

  rollout
    .command('create <release>')
    .description('Roll a release out in waves: e.g. --tag lab --canary dev-1 --waves 10,50,100')
    .option('--device <id>', 'target this device (repeatable)', collect, [])
    .option('--tag <tag>', 'target devices with this tag (repeatable)', collect, [])
    .option('--board <board>', 'target devices of this board (repeatable)', collect, [])
    .option('--canary <id>', 'a device for the first, canary wave (repeatable)', collect, [])
    .option('--waves <percentages>', 'cumulative share of the target per wave', '100')
    .option('--soak <seconds>', 'how long updated devices must stay healthy', '60')
    .option('--error-threshold <percent>', 'a wave trips when more than this % fails', '10')
    .option('--success-threshold <percent>', '% committed before the next wave starts', '100')
    .option('--max-parallel <n>', 'devices updating at once per wave', '50')
    .option('--rate <per-minute>', 'notify at most this many devices a minute')
    .option('--approve', 'wait for `rollout approve` before each wave after the first')
    .option('--abort-on-trip', 'abort (instead of pause) when a wave trips')
    .option('--rollback-on-abort', 'send the previous version back to every device the rollout moved')
    .option('--static', 'do not add devices that start matching later')
    .option('--dry-run', 'show how many devices each wave gets, start nothing')
    .option('--json', 'machine-readable output')
    .action(async (releaseName: string, options) => {
      const target = {
        ...(options.device.length ? { deviceIds: options.device } : {}),
        ...(options.tag.length ? { tags: options.tag } : {}),
        ...(options.board.length ? { boards: options.board } : {}),
      };
      if (Object.keys(target).length === 0)
        throw new BoardfleetError('invalid-arguments', 'choose a target: --device, --tag and/or --board');
      const body: CreateRolloutInput = {
        release: releaseName,
        target,
        waves: waveList(options),
        onTrip: options.abortOnTrip ? 'abort' : 'pause',
        rollbackOnAbort: Boolean(options.rollbackOnAbort),
        dynamic: !options.static,
      };
      const api = ApiClient.fromEnvironment();
      // The preview also says what to know before starting (nothing matches, all offline).
      const preview = await api.request<RolloutPreview>('POST', '/api/v1/rollouts/preview', body);
      for (const warning of preview.warnings) process.stderr.write(`warning: ${warning}\n`);
      if (options.dryRun) {
        if (options.json) return printJson(preview);
        process.stdout.write(`${preview.targetDevices} device(s) match\n`);
        for (const wave of preview.waves)
          process.stdout.write(`  ${wave.name}: ${wave.devices.length} device(s)\n`);
        return;
      }
      const created = await api.request<Rollout>('POST', '/api/v1/rollouts', body);
      if (options.json) return printJson(created);
      process.stdout.write(
        `Started rollout ${created.id}. Watch it with: boardfleet rollout status ${created.id} --watch\n`,
      );
    });

  rollout
    .command('list')
    .description('List rollouts, newest first; a running one whose next wave waits for approval says so')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const { rollouts } = await api.request<RolloutList>('GET', '/api/v1/rollouts');
      if (options.json) return printJson(rollouts);
      const waiting = await approvalsAwaited(api, rollouts);
      printTable(
        rollouts.map((r) => ({
          id: r.id,
          name: r.name,
          state: r.state,
          reason: r.reason ?? waiting.get(r.id) ?? '',
        })),
        ['id', 'name', 'state', 'reason'],
      );
    });

  rollout
    .command('status <id>')
    .description('Waves and devices of a rollout; --watch follows it live until it finishes')
    .option(
      '--watch',
      'redraw every second with elapsed time, soak countdown and per-wave ETA until the rollout ends (Ctrl-C stops watching, not the rollout)',
    )
    .option('--json', 'machine-readable output')
    .action(async (id: string, options: { watch?: boolean; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const read = () => api.request<RolloutStatus>('GET', `/api/v1/rollouts/${encodeURIComponent(id)}`);
      if (options.json) return printJson(await read());
      if (!options.watch) {
        process.stdout.write(`${await statusView(api, await read(), painter())}\n`);
        return;
      }
      // One look-up per artifact for the whole watch.
      const artifacts = new Map<string, ArtifactLabel>();
      process.exitCode = await watch(id, read, (status, paint) => statusView(api, status, paint, artifacts));
    });

  for (const action of ['pause', 'resume', 'abort', 'approve'] as const) {
    rollout
      .command(`${action} <id>`)
      .description(
        action === 'approve'
          ? 'Let the wave that awaits approval start'
          : `${action[0]?.toUpperCase()}${action.slice(1)} a rollout`,
      )
      .action(async (id: string) => {
        const api = ApiClient.fromEnvironment();
        const status = await api.request<RolloutStatus>(
          'POST',
          `/api/v1/rollouts/${encodeURIComponent(id)}/${action}`,
        );
        process.stdout.write(`${await statusView(api, status, painter())}\n`);
      });
  }
}

/**
 * What each running rollout waits for, by id: the list says only `running`, and a wave that waits
 * for an operator is easy to forget. One status read per running rollout (there are few).
 */
async function approvalsAwaited(
  api: ApiClient,
  rollouts: RolloutList['rollouts'],
): Promise<Map<string, string>> {
  const running = rollouts.filter((r) => r.state === 'running');
  const statuses = await Promise.all(
    running.map((r) => api.request<RolloutStatus>('GET', `/api/v1/rollouts/${encodeURIComponent(r.id)}`)),
  );
  const waiting = new Map<string, string>();
  for (const status of statuses) {
    const wave = status.waves.find((candidate) => candidate.state === 'awaiting-approval');
    if (!wave) continue;
    const label = /^wave\b/i.test(wave.name) ? wave.name : `wave ${wave.name}`;
    waiting.set(status.id, `${label} awaits approval: boardfleet rollout approve ${status.id}`);
  }
  return waiting;
}

/**
 * Follows a rollout until it ends: a terminal gets the whole view redrawn every second (the
 * clocks tick), a pipe a new view whenever a state or count changed. Ctrl-C ends the watch and
 * leaves the rollout running. Exits 0 when the rollout completed, 1 when it was aborted.
 */
async function watch(
  id: string,
  read: () => Promise<RolloutStatus>,
  view: (status: RolloutStatus, paint: Paint) => Promise<string>,
): Promise<number> {
  const terminal = Boolean(process.stdout.isTTY);
  const paint = painter();
  const stopped = new AbortController();
  const onInterrupt = () => stopped.abort();
  process.once('SIGINT', onInterrupt);
  try {
    let drawn = '';
    for (;;) {
      const status = await read();
      const ended = status.state === 'completed' || status.state === 'aborted';
      const signature = statusSignature(status);
      if (terminal || signature !== drawn || ended) {
        if (terminal) process.stdout.write('\x1b[2J\x1b[H');
        process.stdout.write(`${await view(status, paint)}\n`);
        drawn = signature;
      }
      if (ended) return status.state === 'completed' ? 0 : 1;
      try {
        await delay(WATCH_INTERVAL_MS, undefined, { signal: stopped.signal });
      } catch {
        process.stdout.write(
          `Stopped watching; rollout ${id} goes on (boardfleet rollout status ${id} --watch to watch again).\n`,
        );
        return 0;
      }
    }
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}
