import { createReadStream, type Stats, statSync } from 'node:fs';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { sha256File } from '../../lib/hash.ts';
import {
  type Artifact,
  type ArtifactList,
  artifactName,
  artifactVersion,
  CHUNKED_ARTIFACT_MIN_BYTES,
} from '../../protocol/api/artifacts.ts';
import { ARTIFACT_KINDS, DEPLOYABLE_ARTIFACT_KINDS, isDeployableKind } from '../../protocol/manifest.ts';
import { knownArtifactBoards } from '../../server/artifacts/artifact-boards.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { readOciImage, scanImageArchive } from '../../device-agent/update/oci/oci-image.ts';
import { ApiClient } from '../api-client.ts';
import { formatBytes, formatTime, printJson, printTable } from '../output.ts';
import { progressBar } from '../progress.ts';

const collect = (value: string, previous: string[]) => [...previous, value];

async function sha256Of(path: string, size: number): Promise<string> {
  const progress = progressBar('hashing  ', size);
  const sha256 = await sha256File(path, (bytesHashed) => progress.update(bytesHashed));
  progress.stop();
  return sha256;
}

/**
 * Checks what the server would check of an upload, before hashing and uploading a large file:
 * the kind, the version, the name and the boards against the board catalogue. Every problem in
 * one error.
 */
export function assertUploadable(upload: {
  kind: string;
  version: string;
  name: string;
  board: string[];
}): void {
  const problems: string[] = [];
  if (!(ARTIFACT_KINDS as readonly string[]).includes(upload.kind))
    problems.push(`--kind ${upload.kind}: use one of ${ARTIFACT_KINDS.join(', ')}`);
  if (!artifactVersion.safeParse(upload.version).success)
    problems.push(`--version ${upload.version}: must be a semantic version such as 1.2.0`);
  if (!artifactName.safeParse(upload.name).success)
    problems.push(`name ${upload.name}: names are lower-case letters, digits, . _ - (set one with --name)`);
  const known = knownArtifactBoards();
  const unknown = upload.board.filter((board) => !known.has(board));
  if (upload.board.length === 0) problems.push('name at least one --board the artifact runs on');
  else if (unknown.length > 0)
    problems.push(
      `--board ${unknown.join(', ')}: not in the board catalogue (known: ${[...known].sort().join(', ')}; see "boardfleet boards")`,
    );
  if (problems.length > 0) throw new BoardfleetError('invalid-arguments', problems.join('; '));
}

/** An `oci-image` must be an image the agent can run: checked before uploading, one line naming the file. */
async function assertOciImage(file: string): Promise<void> {
  try {
    readOciImage(await scanImageArchive(file));
  } catch (error) {
    if (!(error instanceof BoardfleetError)) throw error;
    throw new BoardfleetError('bad-oci-image', `${file}: ${error.message}`);
  }
}

/** A version is published once: the same name and version with other content is refused before uploading. */
async function assertVersionFree(api: ApiClient, name: string, version: string, sha256: string) {
  const { artifacts } = await api.request<ArtifactList>(
    'GET',
    `/api/v1/artifacts?${new URLSearchParams({ name, limit: '1000' })}`,
  );
  const existing = artifacts.find((artifact) => artifact.version === version);
  if (existing && existing.sha256 !== sha256) {
    throw new BoardfleetError(
      'conflict',
      `${name} ${version} already exists (${existing.id}) with different content: publish a new version`,
    );
  }
}

/** The size of the one file to upload: a missing file or a folder is refused in one line, before hashing. */
function uploadableFileSize(file: string): number {
  let stats: Stats;
  try {
    stats = statSync(file);
  } catch {
    throw new BoardfleetError('invalid-arguments', `cannot read ${file}`);
  }
  if (!stats.isFile())
    throw new BoardfleetError(
      'invalid-arguments',
      `cannot read ${file}: it is not a file (push an archive of a folder)`,
    );
  return stats.size;
}

export function register(program: Command): void {
  const artifact = program
    .command('artifact')
    .description('Upload, list and show signed artifacts')
    .addHelpText(
      'after',
      `
Examples:
  boardfleet artifact push app.tgz --kind app-bundle --version 1.2.0 --board rpi-4b
  boardfleet artifact push blink.hex --kind mcu-firmware --version 0.3.1 --board uno --board nano
  boardfleet artifact push app.tar --kind oci-image --version 1.0.0 --board rpi-4b   (docker save, or an OCI layout tar)
  boardfleet artifact list --name app --json
  boardfleet artifact show art-1a2b3c4d5e6f   (with its chunks for delta updates)
Then group artifacts into a release: boardfleet release create --help`,
    );

  artifact
    .command('push <file>')
    .description('Upload a file as a signed, content-addressed artifact')
    .requiredOption(
      '--kind <kind>',
      `${DEPLOYABLE_ARTIFACT_KINDS.join(', ')}; or, kept but not deployed, ${ARTIFACT_KINDS.filter((kind) => !isDeployableKind(kind)).join(', ')}`,
    )
    .requiredOption('--version <semver>', 'its version, e.g. 1.2.0')
    .option('--board <board>', 'a board it runs on (repeatable)', collect, [])
    .option('--name <name>', 'artifact name (default: the file name without extension and version)')
    .option('--json', 'machine-readable output')
    .action(
      async (
        file: string,
        options: { kind: string; version: string; board: string[]; name?: string; json?: boolean },
      ) => {
        const name = options.name ?? defaultArtifactName(file, options.version);
        assertUploadable({ ...options, name });
        const size = uploadableFileSize(file);
        if (options.kind === 'oci-image') await assertOciImage(file);
        const api = ApiClient.fromEnvironment();
        const sha256 = await sha256Of(file, size);
        await assertVersionFree(api, name, options.version, sha256);
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

  artifact
    .command('show <id>')
    .description('Show an artifact: its manifest, and its chunks for delta updates')
    .option('--json', 'machine-readable output (the artifact as the API gives it)')
    .action(async (id: string, options: { json?: boolean }) => {
      const shown = await ApiClient.fromEnvironment().request<Artifact>(
        'GET',
        `/api/v1/artifacts/${encodeURIComponent(id)}`,
      );
      if (options.json) return printJson(shown);
      const lines = [
        `${shown.id}  ${shown.name} ${shown.version}  ${shown.kind}`,
        `  boards: ${shown.boards.join(', ')}`,
        `  size: ${formatBytes(shown.size)}`,
        `  sha256: ${shown.sha256}`,
        `  created: ${formatTime(shown.createdAt)}`,
        `  ${chunksLine(shown)}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

/**
 * `chunks: 4142 (avg 17.0 KiB), 3 new (62.9 KiB); 99.9 % shared with 1.0.0`: how the artifact is
 * cut for delta updates, what it added to the store and what a device on the previous version
 * already has; or why it has no chunks.
 */
export function chunksLine(artifact: Pick<Artifact, 'kind' | 'size' | 'chunks'>): string {
  const { chunks } = artifact;
  if (!chunks) {
    const reason = !isDeployableKind(artifact.kind)
      ? `${artifact.kind} is not deployed to devices`
      : artifact.size < CHUNKED_ARTIFACT_MIN_BYTES
        ? `smaller than ${formatBytes(CHUNKED_ARTIFACT_MIN_BYTES)}: devices download it whole`
        : 'stored before delta updates, or the server runs with BOARDFLEET_DELTA_UPDATES=off';
    return `chunks: none (${reason})`;
  }
  const shared =
    chunks.previousVersion === null
      ? 'no earlier version with chunks'
      : chunks.sharedPercent === null
        ? `shared with ${chunks.previousVersion}: unknown`
        : `${chunks.sharedPercent.toFixed(1)} % shared with ${chunks.previousVersion}`;
  return (
    `chunks: ${chunks.count} (avg ${formatBytes(chunks.averageBytes)}), ` +
    `${chunks.newChunks} new (${formatBytes(chunks.newBytes)}); ${shared}`
  );
}

/**
 * The name a file gives its artifact: `hello-1.0.0.tar.gz` pushed as version 1.0.0 is `hello`,
 * as package files are named; a two-part extension such as `.tar.gz` or `.img.zst` goes as a whole.
 */
export function defaultArtifactName(file: string, version: string): string {
  const stem = basename(file)
    .replace(/(\.tar|\.img)?\.[^.]+$/, '')
    .toLowerCase();
  const withoutVersion = stem.replace(new RegExp(`[-_]v?${version.replace(/[.+]/g, '\\$&')}$`), '');
  return withoutVersion || stem;
}
