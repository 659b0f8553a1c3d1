import type { Command } from 'commander';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import type { Release, ReleaseList } from '../../protocol/api/releases.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatTime, printJson, printTable } from '../output.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

/** `rpi-4b=app 1.2.0, uno=blink 0.3.1`: each board's artifact by name and version, not by id. */
async function describeArtifacts(api: ApiClient, releases: Release[]): Promise<Map<string, string>> {
  const ids = [...new Set(releases.flatMap((release) => Object.values(release.artifacts)))];
  const artifacts = await Promise.all(
    ids.map((id) => api.request<Artifact>('GET', `/api/v1/artifacts/${encodeURIComponent(id)}`)),
  );
  return new Map(artifacts.map((artifact) => [artifact.id, `${artifact.name} ${artifact.version}`]));
}

export function register(program: Command): void {
  const release = program
    .command('release')
    .description('Group artifacts into releases, one artifact per board, and list them')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet release create app-1.2.0 --artifact 'rpi-4b=art-…' --artifact 'uno=art-…'
  boardfleet release create app-1.2.0 --artifact '*=art-…'    # every board the artifact lists
  boardfleet release list
Then roll it out: boardfleet rollout create app-1.2.0 --tag lab --dry-run`,
    );

  release
    .command('create <name>')
    .description(
      'Create a release from artifacts, one per board: --artifact rpi-4b=art-… (or *=art-… for every board it lists)',
    )
    .option('--artifact <board=id>', 'board and artifact id (repeatable)', collect, [])
    .option('--json', 'machine-readable output')
    .action(async (name: string, options: { artifact: string[]; json?: boolean }) => {
      const artifacts = Object.fromEntries(
        options.artifact.map((pair) => {
          const [board, id] = pair.split('=');
          if (!board || !id)
            throw new BoardfleetError('invalid-arguments', `--artifact ${pair}: expected BOARD=ARTIFACT_ID`);
          return [board, id];
        }),
      );
      const created = await ApiClient.fromEnvironment().request<Release>('POST', '/api/v1/releases', {
        name,
        artifacts,
      });
      if (options.json) return printJson(created);
      process.stdout.write(`Created release ${created.name} (${created.id})\n`);
    });

  release
    .command('list')
    .description('List releases, newest first, with the artifact each board gets')
    .option('--limit <n>', 'at most this many', '100')
    .option('--json', 'machine-readable output')
    .action(async (options: { limit: string; json?: boolean }) => {
      const api = ApiClient.fromEnvironment();
      const { releases } = await api.request<ReleaseList>(
        'GET',
        `/api/v1/releases?${new URLSearchParams({ limit: options.limit })}`,
      );
      if (options.json) return printJson(releases);
      const described = await describeArtifacts(api, releases);
      printTable(
        releases.map((entry) => ({
          id: entry.id,
          name: entry.name,
          created: formatTime(entry.createdAt),
          artifacts: Object.entries(entry.artifacts)
            .map(([board, id]) => `${board}=${described.get(id) ?? id}`)
            .join(', '),
        })),
        ['id', 'name', 'created', 'artifacts'],
      );
    });
}
