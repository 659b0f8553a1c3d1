import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TufStatus } from '../../protocol/api/tuf.ts';
import type { TufRoot } from '../../protocol/tuf/metadata.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

describe('boardfleet keys against a real server', () => {
  let server: TestServer;
  let cli: CliRunner;
  let directory: string;
  const keysDir = () => join(directory, 'root-keys');
  const status = async () => JSON.parse((await cli.ok('keys', 'status', '--json')).stdout) as TufStatus;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    directory = mkdtempSync(join(tmpdir(), 'boardfleet-keys-'));
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken, cwd: directory });
  });

  afterAll(async () => {
    await server?.dispose();
    rmSync(directory, { recursive: true, force: true });
  });

  it('says there is no root yet, and which command makes it', async () => {
    const { stdout } = await cli.ok('keys', 'status');
    expect(stdout).toMatch(/^No root yet: boardfleet keys init makes the first/);
    expect(stdout).toMatch(/^targets\s+[0-9a-f]{64}\s+1\s+-\s+-$/m);
  });

  it('holds the first ceremony: holder keys as private files, root version 1 signed and published', async () => {
    const { stdout } = await cli.ok(
      'keys',
      'init',
      '--holders',
      '3',
      '--threshold',
      '2',
      '--expires-days',
      '30',
    );
    expect(stdout).toContain('Published root version 1: 2 of 3 root keys must sign the next root');
    expect(stdout).toContain("Move each .key file to its holder's offline storage");
    for (const holder of ['root-1', 'root-2', 'root-3']) {
      expect(stdout).toContain(join(keysDir(), `${holder}.key`));
      expect(statSync(join(keysDir(), `${holder}.key`)).mode & 0o777).toBe(0o600);
      expect(existsSync(join(keysDir(), `${holder}.pub`))).toBe(true);
    }
    const published = (await server.api<TufRoot>('GET', '/tuf/1.root.json', undefined, '')).body;
    expect(JSON.parse(readFileSync(join(keysDir(), '1.root.json'), 'utf8'))).toEqual(published);
    expect(published.signatures).toHaveLength(3);

    const shown = await cli.ok('keys', 'status');
    expect(shown.stdout).toMatch(
      /^Root version 1, expires \d{4}-\d\d-\d\d \d\d:\d\d UTC; 2 of 3 root keys must sign/,
    );
    expect(shown.stdout).toMatch(/^timestamp\s+[0-9a-f]{64}\s+1\s+-\s+v1, expires /m);
    const again = await cli.failing('keys', 'init', '--out', 'other-keys');
    expect(again.stderr).toBe(
      'boardfleet: the fleet already has root version 1: change it with boardfleet keys draft-root, sign and publish\n',
    );
  });

  it('rotates the timestamp key through a root the old threshold signs, refusing it signed by too few', async () => {
    const rotated = await cli.ok('keys', 'rotate', 'timestamp');
    const pending = /pending timestamp key ([0-9a-f]{64})/.exec(rotated.stdout)?.[1];
    expect(rotated.stdout).toMatch(
      /^New pending timestamp key [0-9a-f]{64}: the current key signs until a root names it/,
    );
    expect((await status()).onlineKeys.timestamp.pending?.keyId).toBe(pending);

    const drafted = await cli.ok('keys', 'draft-root', '--out', 'next.json');
    expect(drafted.stdout).toContain('Drafted root version 2');
    expect(drafted.stdout).toContain('the rotated timestamp key(s) take over');
    const signed = await cli.ok('keys', 'sign', 'next.json', '--key', join(keysDir(), 'root-1.key'));
    expect(signed.stdout).toMatch(/with key [0-9a-f]{64}: 1 of its root keys have signed \(it needs 2\)/);
    const refused = await cli.failing('keys', 'publish', 'next.json');
    expect(refused.stderr).toBe(
      'boardfleet: POST /api/v1/tuf/root failed (400): root version 2 refused: signed by 1 of its own root keys; it needs 2\n',
    );

    await cli.ok('keys', 'sign', 'next.json', '--key', join(keysDir(), 'root-3.key'));
    const published = await cli.ok('keys', 'publish', 'next.json');
    expect(published.stdout).toMatch(/^Published root version 2; it expires/);
    const after = await status();
    expect(after.onlineKeys.timestamp).toEqual({
      active: expect.objectContaining({ keyId: pending }),
      pending: null,
    });
    expect(after.published.timestamp?.version).toBeGreaterThan(1);
  });

  it('replaces the root keys with new holders: the old threshold and the new one sign', async () => {
    const dave = await cli.ok('keys', 'generate', 'dave', '--out', 'new-holders');
    expect(dave.stdout).toMatch(/^Key [0-9a-f]{64}\n {2}private: .*new-holders\/dave\.key/);
    await cli.ok('keys', 'generate', 'erin', '--out', 'new-holders');
    await cli.ok(
      'keys',
      'draft-root',
      '--root-key',
      'new-holders/dave.pub',
      '--root-key',
      'new-holders/erin.pub',
      '--threshold',
      '1',
      '--out',
      'third.json',
    );
    for (const key of [join(keysDir(), 'root-2.key'), join(keysDir(), 'root-3.key'), 'new-holders/erin.key'])
      await cli.ok('keys', 'sign', 'third.json', '--key', key);
    await cli.ok('keys', 'publish', 'third.json');
    const root = (await status()).root?.signed;
    expect(root?.version).toBe(3);
    expect(root?.roles.root.threshold).toBe(1);
    const clash = await cli.failing('keys', 'generate', 'dave', '--out', 'new-holders');
    expect(clash.stderr).toMatch(/new-holders\/dave\.key exists already/);
  });
});
