import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { sha256File } from '../../lib/hash.ts';
import type { Artifact, ArtifactList } from '../../protocol/api/artifacts.ts';
import type { Release } from '../../protocol/api/releases.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { ApiClient } from '../api-client.ts';
import { formatBytes, printJson, printTable } from '../output.ts';
import { progressBar } from '../progress.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

async function sha256Of(path: string, size: number): Promise<string> {
  const progress = progressBar('hashing  ', size);
  const sha256 = await sha256File(path, (bytesHashed) => progress.update(bytesHashed));
  progress.stop();
  return sha256;
}

export function register(program: Command): void {
  const artifact = program.command('artifact').description('Upload and list signed artifacts');

  artifact
    .command('push <file>')
    .description('Upload a file as a signed, content-addressed artifact')
    .requiredOption('--kind <kind>', 'app-bundle, mcu-firmware, linux-image or unikernel')
    .requiredOption('--version <semver>', 'its version, e.g. 1.2.0')
    .option('--board <board>', 'a board it runs on (repeatable)', collect, [])
    .option('--name <name>', 'artifact name (default: the file name without extension)')
    .option('--json', 'machine-readable output')
    .action(
      async (
        file: string,
        options: { kind: string; version: string; board: string[]; name?: string; json?: boolean },
      ) => {
        if (options.board.length === 0)
          throw new BoardfleetError('invalid-arguments', 'name at least one --board the artifact runs on');
        let size: number;
        try {
          size = statSync(file).size;
        } catch {
          throw new BoardfleetError('invalid-arguments', `cannot read ${file}`);
        }
        const name =
          options.name ??
          basename(file)
            .replace(/\.[^.]+$/, '')
            .toLowerCase();
        const sha256 = await sha256Of(file, size);
        const api = ApiClient.fromEnvironment();
        const query = new URLSearchParams({
          name,
          version: options.version,
          kind: options.kind,
          boards: options.board.join(','),
          sha256,
          size: String(size),
        });
        const progress = progressBar('uploading', size);
        let sent = 0;
        const body = Readable.toWeb(
          createReadStream(file).on('data', (chunk) => {
            sent += (chunk as Buffer).length;
            progress.update(sent);
          }),
        ) as ReadableStream;
        const stored = await api
          .request<Artifact>('POST', `/api/v1/artifacts?${query}`, body, {
            'content-type': 'application/octet-stream',
            'content-length': String(size),
          })
          .finally(() => progress.stop());
        if (options.json) return printJson(stored);
        process.stdout.write(
          `Stored ${stored.name} ${stored.version} as ${stored.id} (${formatBytes(stored.size)}, sha256 ${stored.sha256}), manifest signed\n`,
        );
      },
    );

  artifact
    .command('list')
    .description('List artifacts, newest first')
    .option('--name <name>', 'only this name')
    .option('--json', 'machine-readable output')
    .action(async (options: { name?: string; json?: boolean }) => {
      const query = new URLSearchParams(options.name ? { name: options.name } : {});
      const { artifacts } = await ApiClient.fromEnvironment().request<ArtifactList>(
        'GET',
        `/api/v1/artifacts?${query}`,
      );
      if (options.json) return printJson(artifacts);
      printTable(
        artifacts.map((a) => ({
          id: a.id,
          name: a.name,
          version: a.version,
          kind: a.kind,
          boards: a.boards.join(','),
          size: formatBytes(a.size),
          sha256: a.sha256.slice(0, 12),
        })),
        ['id', 'name', 'version', 'kind', 'boards', 'size', 'sha256'],
      );
    });

  const release = program.command('release').description('Group artifacts into releases');
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
}
