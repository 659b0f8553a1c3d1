import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuildJob, BuildList } from '../../protocol/api/builds.ts';
import { CLI, stopProcess } from '../support/agent-process.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** A unikernel build takes 2–20 s here (its steps are cached in ~/.cache/boardfleet); be patient. */
const SLOW = 240_000;

/**
 * Issue 15 item 11: `build` of a unikernel recipe on the server and every `builds` leaf command,
 * through the real CLI process against a real server running the real builder.
 */
describe('build and builds against a real server', () => {
  let server: TestServer;
  let cli: CliRunner;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // One build at a time (the default): a second build waits in the queue behind the first.
    server = await startTestServer(sqliteBackend, { BOARDFLEET_BUILD_CONCURRENCY: '1' });
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken, timeoutMs: SLOW });
  });

  afterAll(async () => {
    await Promise.all(children.map((child) => stopProcess(child, 'SIGKILL')));
    await server?.dispose();
  });

  const job = async (id: string) => (await server.api<BuildJob>('GET', `/api/v1/builds/${id}`)).body;
  const jobs = async () => (await server.api<BuildList>('GET', '/api/v1/builds')).body.builds;

  /** `boardfleet build …` following its build, in the background; resolves with what it printed. */
  function buildInBackground(...args: string[]) {
    const child = spawn(process.execPath, [CLI, 'build', ...args], {
      env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      child.once('error', reject);
      // 'close', not 'exit': by then everything it printed has been read.
      child.once('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it(
    'builds http-hello on the server, follows its log to the end, and cancels the build queued behind it',
    async () => {
      const following = buildInBackground('http-hello', '--board', 'vm-x86_64');
      const first = await eventually('the first build on the server', async () => (await jobs())[0], SLOW);

      // Queued behind the first (one build at a time), so cancelling stops it before it runs.
      const { stdout: queuedJson } = await cli.ok(
        ...['build', 'http-hello', '--board', 'vm-x86_64', '--no-follow', '--json'],
      );
      const second = JSON.parse(queuedJson) as BuildJob;
      expect(second).toMatchObject({ recipe: 'http-hello', board: 'vm-x86_64', state: 'queued' });
      const { stdout: cancelled } = await cli.ok('builds', 'cancel', second.id);
      expect(cancelled).toBe(`Build ${second.id}: cancelled\n`);
      expect(await job(second.id)).toMatchObject({ state: 'cancelled', outputs: [], error: null });

      // The follower streams the log from its first line and returns only once the build has ended.
      const { stdout: log } = await cli.ok('builds', 'log', first.id, '--follow');
      const ended = await job(first.id);
      expect(ended.state).toBe('succeeded');
      expect(log.split('\n')[0]).toMatch(
        new RegExp(`^\\S+ build ${first.id}: recipe http-hello, board vm-x86_64$`),
      );
      expect(log).toMatch(/ built in [\d.]+ s; storing 2 signed artifacts\n$/);

      const built = await following;
      expect(built.code, built.stderr).toBe(0);
      expect(built.stdout).toContain(`Built http-hello for vm-x86_64 (build ${first.id}):\n`);
      expect(built.stdout).toMatch(/^ROLE\s+ARTIFACT\s+NAME\s+VERSION\s+SIZE$/m);
      const bundle = ended.outputs.find((output) => output.role === 'unikernel')!;
      expect(built.stdout).toMatch(
        new RegExp(
          `^unikernel\\s+${bundle.artifactId}\\s+http-hello-vm-x86_64\\s+2\\.0\\.0\\s+[\\d.]+ MiB$`,
          'm',
        ),
      );
      expect(ended.outputs.map((output) => output.role).sort()).toEqual(['build-log', 'sbom', 'unikernel']);

      // The cancelled build's log says it never ran; it stored nothing.
      const { stdout: cancelledLog } = await cli.ok('builds', 'log', second.id);
      expect(cancelledLog).toMatch(/cancelled( before it started)?\n$/);
      expect(cancelledLog).not.toContain('storing');
    },
    SLOW,
  );

  it('lists the builds, newest first, with state and progress as a percentage', async () => {
    const [cancelled, succeeded] = await jobs();
    expect([cancelled?.state, succeeded?.state]).toEqual(['cancelled', 'succeeded']);
    for (const args of [['builds'], ['builds', 'list']]) {
      const { stdout } = await cli.ok(...args);
      const lines = stdout.trimEnd().split('\n');
      expect(lines[0]).toMatch(/^ID\s+RECIPE\s+BOARD\s+STATE\s+PROGRESS\s+STEP$/);
      expect(lines[1]).toMatch(
        new RegExp(`^${cancelled!.id}\\s+http-hello\\s+vm-x86_64\\s+cancelled\\s+\\d+%`),
      );
      expect(lines[2]).toMatch(
        new RegExp(`^${succeeded!.id}\\s+http-hello\\s+vm-x86_64\\s+succeeded\\s+100%\\s`),
      );
      expect(lines).toHaveLength(3);
    }
    const listed = JSON.parse((await cli.ok('builds', 'list', '--json')).stdout) as BuildJob[];
    expect(listed.map((build) => [build.id, build.state])).toEqual([
      [cancelled!.id, 'cancelled'],
      [succeeded!.id, 'succeeded'],
    ]);
  });

  it('refuses to cancel a build that has ended, in one line', async () => {
    const [, succeeded] = await jobs();
    const refused = await cli.failing('builds', 'cancel', succeeded!.id);
    expect(refused.stderr).toBe(
      `boardfleet: POST /api/v1/builds/${succeeded!.id}/cancel failed (409): build ${succeeded!.id} has already ended (succeeded)\n`,
    );
    expect((await job(succeeded!.id)).state).toBe('succeeded');
  });
});
