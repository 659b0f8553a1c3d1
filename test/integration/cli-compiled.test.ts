import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshBuild } from '../../cli/compiled-cli.js';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url);
const CLI = fileURLToPath(new URL('cli/boardfleet.js', ROOT));

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `boardfleet ARGS` and checks it ran the compiled build: the bin takes it only while it is
 * fresh, so fresh before and after means it did not fall back to the sources.
 */
async function compiled(args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  expect(freshBuild(ROOT), 'the CLI build is stale before the command').not.toBeNull();
  const outcome = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: Outcome) => error,
  );
  expect(freshBuild(ROOT), 'a source changed while the command ran').not.toBeNull();
  return outcome;
}

describe('the compiled CLI (dist/cli)', () => {
  let server: TestServer;

  beforeAll(async () => {
    // `npm test` builds first; a single file run with vitest may not have.
    if (!freshBuild(ROOT)) await run(process.execPath, [fileURLToPath(new URL('cli/build.mjs', ROOT))]);
    server = await startTestServer(sqliteBackend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('prints the same --help as the sources, listing every command', async () => {
    const { code, stdout } = await compiled(['--help']);
    expect(code).toBe(0);
    const { stdout: fromSources } = await run(process.execPath, [CLI, '--help'], {
      env: { ...process.env, BOARDFLEET_CLI_SOURCES: '1' },
    });
    expect(stdout).toBe(fromSources);
    expect(stdout).toMatch(/^ {2}build \[options\] <target>\s+Build a firmware recipe/m);
    for (const command of ['server', 'devices', 'agent', 'release', 'rollout', 'flash', 'run-image'])
      expect(stdout).toMatch(new RegExp(`^ {2}${command}\\b`, 'm'));
  });

  it('runs devices list against a real server', async () => {
    const created = await server.api<CreatedDevice>('POST', '/api/v1/devices', {
      name: 'compiled-pi',
      tags: ['lab'],
    });
    expect(created.status).toBe(201);
    const { code, stdout } = await compiled(['devices', 'list'], {
      BOARDFLEET_URL: server.httpUrl,
      BOARDFLEET_TOKEN: server.adminToken,
    });
    expect(code).toBe(0);
    expect(stdout).toMatch(
      new RegExp(`^${created.body.device.id}\\s+compiled-pi\\s+offline\\s.*\\blab\\b`, 'm'),
    );
  });

  it('finds the files that sources resolve beside themselves: package.json and the board files', async () => {
    const { version } = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as {
      version: string;
    };
    expect((await compiled(['--version'])).stdout.trim()).toBe(version);
    const { code, stdout } = await compiled(['boards', '--json']);
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as Array<{ id: string }>).map((board) => board.id)).toContain('uno');
  });

  it("answers a command group's help, and an unknown command with a suggestion", async () => {
    expect((await compiled(['help', 'devices'])).stdout).toMatch(/^Usage: boardfleet devices /m);
    const unknown = await compiled(['devcies']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("error: unknown command 'devcies'\n(Did you mean devices?)");
  });
});
