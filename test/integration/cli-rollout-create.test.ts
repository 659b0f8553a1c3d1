import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Rollout, RolloutList, RolloutPreview, RolloutStatus } from '../../protocol/api/rollouts.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/** Every CLI command is a process of its own: seconds each on a loaded two-core machine. */
const SLOW = 180_000;
const RELEASE = 'app-1.0.0';
const OFFLINE = 'warning: all 4 matching device(s) are offline: they update when they come back online\n';

/**
 * Issue 19 item 7: `rollout create` with each of its flags, `rollout status --json` and the
 * errors, through the real CLI process against a real server. The devices are registered and
 * offline: a rollout waits for them, which is all its settings need. A device registered without
 * a board fails at once (the release has nothing for it), which trips its wave.
 */
describe('rollout create against a real server', { timeout: SLOW }, () => {
  let server: TestServer;
  let cli: CliRunner;
  const lab: string[] = [];

  const rollouts = async () => (await server.api<RolloutList>('GET', '/api/v1/rollouts')).body.rollouts;
  const status = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const abort = (id: string) => server.api('POST', `/api/v1/rollouts/${id}/abort`);
  const addDevice = async (name: string, fields: { tags: string[]; board?: string }) =>
    (await server.api<{ device: { id: string } }>('POST', '/api/v1/devices', { name, ...fields })).body.device
      .id;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    const artifact = await uploadArtifact(server, Buffer.from('an app'), {
      name: 'app',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    await server.api('POST', '/api/v1/releases', { name: RELEASE, artifacts: { 'rpi-4b': artifact.id } });
    for (const index of [1, 2, 3, 4])
      lab.push(await addDevice(`lab-${index}`, { tags: ['lab'], board: 'rpi-4b' }));
    await addDevice('boardless', { tags: ['boardless'] });
  });

  afterAll(async () => {
    await server?.dispose();
  });

  it('shows how the target splits into a canary and waves with --dry-run, and starts nothing', async () => {
    const args = ['rollout', 'create', RELEASE, '--tag', 'lab', '--canary', lab[0]!, '--waves', '25,100'];
    const shown = await cli.ok(...args, '--dry-run');
    expect(shown.stderr).toBe(OFFLINE);
    expect(shown.stdout).toBe(
      '4 device(s) match\n  canary: 1 device(s)\n  25%: 1 device(s)\n  100%: 2 device(s)\n',
    );

    const preview = JSON.parse((await cli.ok(...args, '--dry-run', '--json')).stdout) as RolloutPreview;
    expect(preview).toMatchObject({ release: RELEASE, targetDevices: 4, warnings: [OFFLINE.slice(9, -1)] });
    expect(preview.waves.map((wave) => [wave.name, wave.devices.length])).toEqual([
      ['canary', 1],
      ['25%', 1],
      ['100%', 2],
    ]);
    expect(preview.waves[0]!.devices).toEqual([lab[0]]);
    expect(preview.waves.flatMap((wave) => wave.devices).sort()).toEqual([...lab].sort());
    expect(await rollouts()).toEqual([]);
  });

  it.each([
    {
      what: 'two devices by id',
      target: (ids: string[]) => ['--device', ids[0]!, '--device', ids[1]!],
      devices: 2,
    },
    { what: 'a board', target: () => ['--board', 'rpi-4b'], devices: 4 },
    { what: 'a board and a tag', target: () => ['--board', 'rpi-4b', '--tag', 'lab'], devices: 4 },
    {
      what: 'a board no device of the tag has',
      target: () => ['--board', 'uno', '--tag', 'lab'],
      devices: 0,
    },
  ])('targets $what: $devices device(s)', async ({ target, devices }) => {
    const { stdout, stderr } = await cli.ok('rollout', 'create', RELEASE, ...target(lab), '--dry-run');
    expect(stdout.split('\n')[0]).toBe(`${devices} device(s) match`);
    expect(stderr).toContain(devices === 0 ? 'warning: no device matches the target' : 'are offline');
  });

  it('starts a rollout with the defaults, and `rollout status --json` answers as the API does', async () => {
    const { stdout, stderr } = await cli.ok('rollout', 'create', RELEASE, '--tag', 'lab');
    expect(stderr).toBe(OFFLINE);
    const id =
      /^Started rollout (ro-[0-9a-f]+)\. Watch it with: boardfleet rollout status \1 --watch\n$/.exec(
        stdout,
      )?.[1] as string;
    expect(id, stdout).toBeDefined();
    const created = await status(id);
    expect(created).toMatchObject({
      name: `${RELEASE} rollout`,
      target: { tags: ['lab'] },
      options: { onTrip: 'pause', rollbackOnAbort: false, dynamic: true },
    });
    expect(created.waves.map((wave) => wave.config)).toEqual([
      {
        name: '100%',
        percent: 100,
        soakSeconds: 60,
        errorThresholdPercent: 10,
        successThresholdPercent: 100,
        maxParallel: 50,
        notifyRatePerMinute: null,
        requiresApproval: false,
        deviceTimeoutSeconds: 1800,
        retries: 0,
      },
    ]);
    // Device states move on as the server ticks: what does not move is compared whole.
    const lasting = ({ id, name, releaseId, target, options, createdAt, waves }: RolloutStatus) => ({
      ...{ id, name, releaseId, target, options, createdAt },
      waves: waves.map((wave) => [wave.index, wave.name, wave.config]),
    });
    const shown = JSON.parse((await cli.ok('rollout', 'status', id, '--json')).stdout) as RolloutStatus;
    expect(lasting(shown)).toEqual(lasting(created));
    expect(shown.devices.map((device) => device.deviceId).sort()).toEqual([...lab].sort());
    await abort(id);
  });

  it('starts a rollout with every wave and gate flag, as --json shows and the server keeps', async () => {
    const { stdout } = await cli.ok(
      ...['rollout', 'create', RELEASE, '--tag', 'lab', '--canary', lab[0]!, '--waves', '50,100'],
      ...['--soak', '5', '--error-threshold', '20', '--success-threshold', '90', '--max-parallel', '3'],
      ...['--rate', '30', '--approve', '--abort-on-trip', '--rollback-on-abort', '--static', '--json'],
    );
    const created = JSON.parse(stdout) as Rollout;
    expect(created).toMatchObject({
      name: `${RELEASE} rollout`,
      state: 'running',
      target: { tags: ['lab'] },
      options: { onTrip: 'abort', rollbackOnAbort: true, dynamic: false },
    });
    const gates = {
      soakSeconds: 5,
      errorThresholdPercent: 20,
      successThresholdPercent: 90,
      maxParallel: 3,
      notifyRatePerMinute: 30,
    };
    const { waves } = await status(created.id);
    expect(waves.map((wave) => [wave.name, wave.config])).toEqual([
      ['canary', expect.objectContaining({ ...gates, canary: [lab[0]], requiresApproval: false })],
      ['50%', expect.objectContaining({ ...gates, percent: 50, requiresApproval: true })],
      ['100%', expect.objectContaining({ ...gates, percent: 100, requiresApproval: true })],
    ]);
    await abort(created.id);
  });

  it.each([
    { flags: [], state: 'paused' },
    { flags: ['--abort-on-trip'], state: 'aborted' },
  ])('leaves a rollout whose only wave trips $state with $flags', async ({ flags, state }) => {
    const { stdout } = await cli.ok('rollout', 'create', RELEASE, '--tag', 'boardless', '--json', ...flags);
    const { id } = JSON.parse(stdout) as Rollout;
    const ended = await eventually(
      'the wave to trip',
      async () => {
        const current = await status(id);
        return current.state === state ? current : undefined;
      },
      SLOW,
    );
    expect(ended.reason).toBe('wave 100% tripped: 1 of 1 failed (threshold 10%)');
    expect(ended.waves.map((wave) => wave.state)).toEqual(['tripped']);
    const listed = JSON.parse((await cli.ok('rollout', 'list', '--json')).stdout) as RolloutList['rollouts'];
    expect(listed.find((rollout) => rollout.id === id)).toMatchObject({
      state,
      counts: { size: 1, failed: 1 },
    });
    if (state !== 'aborted') await abort(id);
  });

  it.each([
    {
      what: 'an unknown release',
      args: ['app-9.9.9', '--tag', 'lab'],
      message: 'POST /api/v1/rollouts/preview failed (404): release app-9.9.9 not found',
    },
    { what: 'no target', args: [RELEASE], message: 'choose a target: --device, --tag and/or --board' },
    {
      what: 'a wave of 0%',
      args: [RELEASE, '--tag', 'lab', '--waves', '0,50'],
      message: '--waves 0,50: percentages between 1 and 100',
    },
    {
      what: 'a wave that is no number',
      args: [RELEASE, '--tag', 'lab', '--waves', '10,,100'],
      message: '--waves 10,,100: percentages between 1 and 100',
    },
    {
      what: 'waves that shrink',
      args: [RELEASE, '--tag', 'lab', '--waves', '50,10'],
      message: '--waves 50,10: cumulative shares, each larger than the one before (e.g. 10,50,100)',
    },
  ])('refuses $what in one line and creates nothing', async ({ args, message }) => {
    const before = await rollouts();
    for (const dryRun of [[], ['--dry-run']]) {
      const refused = await cli.failing('rollout', 'create', ...args, ...dryRun);
      expect(refused).toEqual({ code: 1, stdout: '', stderr: `boardfleet: ${message}\n` });
    }
    expect(await rollouts()).toEqual(before);
  });

  it.each([['status'], ['pause'], ['resume'], ['abort']])(
    'answers `rollout %s` of an unknown rollout in one line',
    async (action) => {
      const refused = await cli.failing('rollout', action, 'ro-000000000000');
      const request =
        action === 'status'
          ? 'GET /api/v1/rollouts/ro-000000000000'
          : `POST /api/v1/rollouts/ro-000000000000/${action}`;
      expect(refused).toEqual({
        code: 1,
        stdout: '',
        stderr: `boardfleet: ${request} failed (404): rollout ro-000000000000 not found\n`,
      });
    },
  );
});
