import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import type { Rollout, RolloutList, RolloutStatus } from '../../protocol/api/rollouts.ts';
import { buildAppBundle } from '../support/app-bundles.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type InProcessAgent, startInProcessFleet } from '../support/in-process-agents.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const TAG = 'gated';
/** Real agents on a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 60_000;

/**
 * Issue 15 item 11: `artifact list` and every `rollout` leaf command through the real CLI process,
 * against a real server and real agents (in this process); each step is checked in the CLI's
 * words and in the API's state.
 */
describe('rollout and artifact commands against a real server and agents', () => {
  let server: TestServer;
  let cli: CliRunner;
  let workDir: string;
  let agents: InProcessAgent[] = [];
  const pushed: Artifact[] = [];
  let completedId = '';

  const status = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const until = (id: string, what: string, check: (s: RolloutStatus) => boolean) =>
    eventually(
      what,
      async () => {
        const current = await status(id);
        return check(current) ? current : undefined;
      },
      SLOW,
    );
  const rowOf = (table: string, id: string) => table.split('\n').find((line) => line.startsWith(id));

  /** `artifact push` of a fresh app bundle, then `release create app-VERSION` of it. */
  async function release(version: string): Promise<string> {
    const file = join(workDir, 'app.tgz');
    writeFileSync(file, await buildAppBundle({ name: 'app', version }));
    const { stdout } = await cli.ok(
      ...['artifact', 'push', file, '--kind', 'app-bundle', '--version', version, '--board', BOARD, '--json'],
    );
    const artifact = JSON.parse(stdout) as Artifact;
    pushed.push(artifact);
    await cli.ok('release', 'create', `app-${version}`, '--artifact', `${BOARD}=${artifact.id}`);
    return `app-${version}`;
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-rollouts-'));
    // Held: they download and verify an update but activate it only when the test lets them.
    agents = await startInProcessFleet(server, {
      tag: TAG,
      count: 2,
      board: BOARD,
      beforeStart: (agent) => agent.holdUpdates(),
    });
  });

  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await server?.dispose();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it(
    'waits at a gated wave, shows it waiting in the list, and approves, pauses, resumes it to completion',
    async () => {
      const name = await release('1.0.0');
      const { stdout: createdJson } = await cli.ok(
        ...[
          'rollout',
          'create',
          name,
          '--tag',
          TAG,
          '--waves',
          '50,100',
          '--approve',
          '--soak',
          '1',
          '--json',
        ],
      );
      const created = JSON.parse(createdJson) as Rollout;
      expect(created).toMatchObject({ name: `${name} rollout`, state: 'running' });
      const id = created.id;
      completedId = id;

      const started = await until(id, 'the devices placed in their waves', (s) =>
        s.devices.some((d) => d.waveIndex === 0),
      );
      const first = started.devices.find((device) => device.waveIndex === 0)!;
      agents.find((agent) => agent.deviceId === first.deviceId)!.releaseUpdates();
      const waiting = await until(
        id,
        'the second wave awaiting approval',
        (s) => s.waves[1]?.state === 'awaiting-approval',
      );
      expect(waiting.waves.map((wave) => [wave.name, wave.state])).toEqual([
        ['50%', 'succeeded'],
        ['100%', 'awaiting-approval'],
      ]);

      const { stdout: list } = await cli.ok('rollout', 'list');
      expect(list).toMatch(/^ID\s+NAME\s+STATE\s+REASON$/m);
      expect(rowOf(list, id)).toMatch(
        new RegExp(
          `^${id}\\s+app-1\\.0\\.0 rollout\\s+running\\s+wave 100% awaits approval: boardfleet rollout approve ${id}$`,
        ),
      );
      const listed = JSON.parse(
        (await cli.ok('rollout', 'list', '--json')).stdout,
      ) as RolloutList['rollouts'];
      expect(listed.find((rollout) => rollout.id === id)).toMatchObject({
        state: 'running',
        counts: { size: 2, committed: 1, queued: 1 },
      });
      const { stdout: shown } = await cli.ok('rollout', 'status', id);
      expect(shown).toMatch(/^ {2}100%\s+awaiting-approval/m);
      expect(shown).toContain(`waits for: boardfleet rollout approve ${id}`);

      const { stdout: approved } = await cli.ok('rollout', 'approve', id);
      expect(approved).toMatch(/^ {2}100%\s+running/m);
      expect((await status(id)).waves[1]?.state).toBe('running');
      expect((await status(id)).log.map((entry) => entry.message)).toContain('wave 100% approved by admin');

      const { stdout: paused } = await cli.ok('rollout', 'pause', id);
      expect(paused.split('\n')[0]).toMatch(new RegExp(`^app-1\\.0\\.0 rollout \\(${id}\\): paused`));
      expect((await status(id)).state).toBe('paused');
      expect((await cli.ok('rollout', 'status', id)).stdout.split('\n')[0]).toContain(`(${id}): paused`);
      expect(rowOf((await cli.ok('rollout', 'list')).stdout, id)).toMatch(/\spaused(\s|$)/);

      const { stdout: resumed } = await cli.ok('rollout', 'resume', id);
      expect(resumed.split('\n')[0]).toContain(`(${id}): running`);
      expect((await status(id)).state).toBe('running');

      // The held device may now activate: the rollout goes on to the end, which `--watch` waits for.
      for (const agent of agents) agent.releaseUpdates();
      const watched = await cli.ok('rollout', 'status', id, '--watch');
      expect(watched.stdout).toContain(`(${id}): completed`);
      const done = await status(id);
      expect(done.state).toBe('completed');
      expect(done.devices.map((device) => device.state)).toEqual(['committed', 'committed']);
    },
    4 * SLOW,
  );

  it(
    'aborts a second rollout, lists both with their outcome, and refuses to approve an aborted one',
    async () => {
      for (const agent of agents) agent.holdUpdates();
      const name = await release('1.0.1');
      const { stdout: started } = await cli.ok('rollout', 'create', name, '--tag', TAG, '--soak', '1');
      const id = /^Started rollout (ro-\S+)\./.exec(started)?.[1] as string;
      expect(id).toBeDefined();
      await until(id, 'devices notified', (s) => s.devices.every((device) => device.state !== 'queued'));

      const { stdout: aborted } = await cli.ok('rollout', 'abort', id);
      expect(aborted.split('\n')[0]).toMatch(
        new RegExp(`^app-1\\.0\\.1 rollout \\(${id}\\): aborted — aborted by admin`),
      );
      const after = await status(id);
      expect(after.state).toBe('aborted');
      expect(after.waves.map((wave) => wave.state)).toEqual(['aborted']);
      expect(after.devices.some((device) => device.state === 'committed')).toBe(false);

      const { stdout: list } = await cli.ok('rollout', 'list');
      expect(rowOf(list, id)).toMatch(/\saborted\s+aborted by admin$/);
      expect(rowOf(list, completedId)).toMatch(/\scompleted(\s|$)/);

      const refused = await cli.failing('rollout', 'approve', id);
      expect(refused.stderr).toBe(
        `boardfleet: POST /api/v1/rollouts/${id}/approve failed (409): cannot approve rollout ${id}: it is aborted and no wave awaits approval\n`,
      );
      expect((await status(id)).state).toBe('aborted');
    },
    2 * SLOW,
  );

  it('lists artifacts with version, boards, size and sha256', async () => {
    expect(pushed).toHaveLength(2);
    const { stdout } = await cli.ok('artifact', 'list');
    expect(stdout).toMatch(/^ID\s+NAME\s+VERSION\s+KIND\s+BOARDS\s+SIZE\s+SHA256$/m);
    for (const artifact of pushed) {
      const size = artifact.size < 1024 ? `${artifact.size} B` : `${(artifact.size / 1024).toFixed(1)} KiB`;
      expect(rowOf(stdout, artifact.id)).toMatch(
        new RegExp(
          `^${artifact.id}\\s+app\\s+${artifact.version.replaceAll('.', '\\.')}\\s+app-bundle\\s+${BOARD}\\s+${size}\\s+${artifact.sha256.slice(0, 12)}$`,
        ),
      );
    }
    const listed = JSON.parse((await cli.ok('artifact', 'list', '--json')).stdout) as Artifact[];
    const facts = ({ id, version, boards, size, sha256 }: Artifact) => ({
      id,
      version,
      boards,
      size,
      sha256,
    });
    expect(listed.map(facts).sort((a, b) => a.version.localeCompare(b.version))).toEqual(pushed.map(facts));
  });

  it.each(['rollout', 'builds', 'bench'])('ends `%s --help` with examples', async (group) => {
    const { stdout } = await cli.ok(group, '--help');
    expect(stdout).toMatch(new RegExp(`\\nExamples:\\n {2}boardfleet ${group} \\S+`));
    const examples = stdout.slice(stdout.indexOf('\nExamples:\n'));
    expect(
      examples.split('\n').filter((line) => line.startsWith(`  boardfleet ${group} `)).length,
    ).toBeGreaterThanOrEqual(3);
  });
});
