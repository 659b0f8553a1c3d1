import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../cli/output.ts';
import { sha256 } from '../../lib/hash.ts';
import type { Artifact, ArtifactList, FleetKey } from '../../protocol/api/artifacts.ts';
import { ARTIFACT_KINDS, isDeployableKind } from '../../protocol/manifest.ts';
import { verifyManifest } from '../../protocol/manifest-signature.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { ociLayoutEntries, tarBytes } from '../../device-agent/update/oci/oci-test-images.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

/** The board each kind is pushed for: a microcontroller, a VM's host board, a Raspberry Pi. */
const BOARD_OF_KIND: Record<string, string> = { 'mcu-firmware': 'uno', unikernel: 'generic-x64' };
/** A one-record Intel HEX file: what an mcu-firmware artifact holds, small enough to read. */
const END_OF_FILE_HEX = ':00000001FF\n';
/** The smallest OCI image layout: one layer of one file (the CLI checks the structure on push). */
const ONE_FILE_IMAGE = tarBytes(ociLayoutEntries({ layers: [[{ path: 'app', content: 'x' }]] }));
/** Every CLI command is a process of its own: seconds each on a loaded two-core machine. */
const SLOW = 180_000;
const CREATED = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d';
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Issue 19 item 7: every `artifact` leaf command through the real CLI process against a real
 * server: what it prints, its exit code, and what the server then holds (signed as it says).
 */
describe('artifact push, list and show against a real server', { timeout: SLOW }, () => {
  let server: TestServer;
  let cli: CliRunner;
  let workDir: string;
  let fleetKeyPem: string;

  const stored = async () =>
    (await server.api<ArtifactList>('GET', '/api/v1/artifacts?limit=1000')).body.artifacts;
  const fromApi = async (id: string) => (await server.api<Artifact>('GET', `/api/v1/artifacts/${id}`)).body;
  const file = (name: string, content: string | Buffer) => {
    const path = join(workDir, name);
    writeFileSync(path, content);
    return path;
  };

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-artifact-'));
    fleetKeyPem = (await server.api<FleetKey>('GET', '/api/v1/fleet-key')).body.publicKeyPem;
  });

  afterAll(async () => {
    await server?.dispose();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it.each(ARTIFACT_KINDS.map((kind) => [kind]))(
    'pushes a %s file, named after the file, stored with a manifest the fleet key signed, and shows it',
    async (kind) => {
      const board = BOARD_OF_KIND[kind] ?? 'rpi-4b';
      const content =
        kind === 'mcu-firmware'
          ? END_OF_FILE_HEX
          : kind === 'oci-image'
            ? ONE_FILE_IMAGE
            : `${kind} content\n`;
      const path = file(`${kind}-1.0.0.bin`, content);
      const { stdout } = await cli.ok(
        'artifact',
        'push',
        path,
        '--kind',
        kind,
        '--version',
        '1.0.0',
        '--board',
        board,
      );

      const id = new RegExp(`^Stored ${kind} 1\\.0\\.0 as (art-[0-9a-f]+) `).exec(stdout)?.[1] as string;
      expect(id, stdout).toBeDefined();
      const digest = sha256(Buffer.from(content));
      expect(stdout).toBe(
        `Stored ${kind} 1.0.0 as ${id} (${formatBytes(content.length)}, sha256 ${digest}), manifest signed\n`,
      );
      const artifact = await fromApi(id);
      expect(artifact).toMatchObject({
        name: kind,
        version: '1.0.0',
        kind,
        boards: [board],
        size: content.length,
      });
      expect(artifact.sha256).toBe(digest);
      expect(verifyManifest(artifact.manifest, artifact.signature, fleetKeyPem)).toMatchObject({
        name: kind,
        version: '1.0.0',
        kind,
        boards: [board],
        sha256: digest,
        size: content.length,
      });

      const { stdout: shown } = await cli.ok('artifact', 'show', id);
      const noChunks = isDeployableKind(kind)
        ? `smaller than ${formatBytes(256 * 1024)}: devices download it whole`
        : `${kind} is not deployed to devices`;
      expect(shown).toMatch(
        new RegExp(
          `^${id} {2}${kind} 1\\.0\\.0 {2}${kind}\\n {2}boards: ${board}\\n {2}size: ${escape(formatBytes(content.length))}\\n` +
            ` {2}sha256: ${digest}\\n {2}created: ${CREATED}\\n {2}chunks: none \\(${escape(noChunks)}\\)\\n$`,
        ),
      );
      expect(JSON.parse((await cli.ok('artifact', 'show', id, '--json')).stdout)).toEqual(artifact);
    },
  );

  it('pushes for several boards under the name before the version, and again as the same artifact', async () => {
    const path = file('blink-0.3.1.hex', END_OF_FILE_HEX);
    const push = () =>
      cli.ok(
        ...['artifact', 'push', path, '--kind', 'mcu-firmware', '--version', '0.3.1'],
        ...['--board', 'uno', '--board', 'nano', '--json'],
      );
    const first = JSON.parse((await push()).stdout) as Artifact;
    expect(first).toMatchObject({ name: 'blink', version: '0.3.1', boards: ['nano', 'uno'] });
    // The same name, version and content: the artifact already stored, not a second one.
    const again = JSON.parse((await push()).stdout) as Artifact;
    expect(again.id).toBe(first.id);
    expect((await stored()).filter((artifact) => artifact.name === 'blink')).toHaveLength(1);

    const { stdout: table } = await cli.ok('artifact', 'list', '--name', 'blink');
    expect(table.trimEnd().split('\n')).toEqual([
      expect.stringMatching(/^ID\s+NAME\s+VERSION\s+KIND\s+BOARDS\s+SIZE\s+SHA256$/),
      expect.stringMatching(
        new RegExp(
          `^${first.id}\\s+blink\\s+0\\.3\\.1\\s+mcu-firmware\\s+nano,uno\\s+12 B\\s+${first.sha256.slice(0, 12)}$`,
        ),
      ),
    ]);
    const listed = JSON.parse(
      (await cli.ok('artifact', 'list', '--name', 'blink', '--json')).stdout,
    ) as Artifact[];
    expect(listed).toEqual([await fromApi(first.id)]);
  });

  it('shows how a large artifact is chunked, and what a second version shares with the first', async () => {
    const first = randomBytes(700 * 1024);
    const second = Buffer.concat([first, randomBytes(20 * 1024)]);
    const push = async (content: Buffer, version: string) =>
      JSON.parse(
        (
          await cli.ok(
            ...['artifact', 'push', file(`big-${version}.tgz`, content), '--kind', 'app-bundle'],
            ...['--version', version, '--board', 'rpi-4b', '--json'],
          )
        ).stdout,
      ) as Artifact;
    const one = await push(first, '1.0.0');
    const two = await push(second, '1.1.0');

    const chunksLine = async (id: string) =>
      (await cli.ok('artifact', 'show', id)).stdout.split('\n').find((line) => line.startsWith('  chunks: '));
    const counted = /^ {2}chunks: (\d+) \(avg [\d.]+ KiB\), (\d+) new \([\d.]+ (KiB|MiB)\); (.+)$/;
    const [, count, fresh, , sharedOne] = counted.exec((await chunksLine(one.id)) ?? '') ?? [];
    expect(sharedOne).toBe('no earlier version with chunks');
    expect(fresh).toBe(count);
    expect((await fromApi(one.id)).chunks).toMatchObject({ count: Number(count), newChunks: Number(count) });

    const [, , newInTwo, , sharedTwo] = counted.exec((await chunksLine(two.id)) ?? '') ?? [];
    const { chunks } = await fromApi(two.id);
    expect(sharedTwo).toBe(`${chunks!.sharedPercent!.toFixed(1)} % shared with 1.0.0`);
    expect(chunks!.sharedPercent).toBeGreaterThan(90);
    expect(Number(newInTwo)).toBeLessThan(Number(count));
  });

  const APP = ['--kind', 'app-bundle', '--version', '2.0.0'];
  it.each([
    {
      what: 'a folder',
      args: (dir: string) => [join(dir, 'folder'), ...APP, '--board', 'rpi-4b'],
      message: (dir: string) => `cannot read ${dir}/folder: it is not a file (push an archive of a folder)`,
    },
    {
      what: 'a missing file',
      args: (dir: string) => [join(dir, 'missing.tgz'), ...APP, '--board', 'rpi-4b'],
      message: (dir: string) => `cannot read ${dir}/missing.tgz`,
    },
    {
      what: 'no --board',
      args: (dir: string) => [join(dir, 'app-2.0.0.tgz'), ...APP],
      message: () => 'name at least one --board the artifact runs on',
    },
    {
      what: 'a name with capitals',
      args: (dir: string) => [join(dir, 'app-2.0.0.tgz'), ...APP, '--board', 'rpi-4b', '--name', 'My App'],
      message: () => 'name My App: names are lower-case letters, digits, . _ - (set one with --name)',
    },
    {
      what: 'an oci-image that is not a tar',
      args: (dir: string) => [
        join(dir, 'app-2.0.0.tgz'),
        '--kind',
        'oci-image',
        '--version',
        '2.0.0',
        '--board',
        'rpi-4b',
      ],
      message: (dir: string) =>
        `${dir}/app-2.0.0.tgz: not a tar archive: TAR_BAD_ARCHIVE: Unrecognized archive format`,
    },
    {
      what: 'an oci-image tar that holds no image',
      args: () => [
        file('notes.tar', tarBytes([{ path: 'notes.txt', content: 'hi' }])),
        '--kind',
        'oci-image',
        '--version',
        '2.0.0',
        '--board',
        'rpi-4b',
      ],
      message: (dir: string) =>
        `${dir}/notes.tar: not an OCI image layout (no oci-layout and index.json) nor a docker save archive (no manifest.json)`,
    },
  ])('refuses $what in one line, before hashing, and stores nothing', async ({ args, message }) => {
    mkdirSync(join(workDir, 'folder'), { recursive: true });
    file('app-2.0.0.tgz', 'an app');
    const before = await stored();
    const refused = await cli.failing('artifact', 'push', ...args(workDir));
    expect(refused).toEqual({ code: 1, stdout: '', stderr: `boardfleet: ${message(workDir)}\n` });
    expect(await stored()).toEqual(before);
  });

  it('answers `artifact show` of an unknown id in one line', async () => {
    const refused = await cli.failing('artifact', 'show', 'art-000000000000');
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'boardfleet: GET /api/v1/artifacts/art-000000000000 failed (404): artifact art-000000000000 not found\n',
    });
  });
});
