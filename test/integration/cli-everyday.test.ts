import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import type { CreatedDevice } from '../../protocol/api/devices.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import { sqliteBackend } from '../support/databases.ts';
import { announceDevice, connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const CLI = new URL('../../cli/boardfleet.js', import.meta.url).pathname;

describe('everyday CLI commands against a real server', () => {
  let server: TestServer;
  let workDir: string;
  let shelf: CreatedDevice;
  let attic: CreatedDevice;
  let shelfClient: MqttClient;

  const cli = (...args: string[]) =>
    run(process.execPath, [CLI, ...args], {
      env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
    });
  const failing = (...args: string[]) =>
    cli(...args).then(
      () => {
        throw new Error(`boardfleet ${args.join(' ')} succeeded`);
      },
      (error: { code: number; stdout: string; stderr: string }) => error,
    );

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-cli-'));
    shelf = JSON.parse((await cli('devices', 'add', 'shelf-pi', '--tag', 'shelf', '--json')).stdout);
    attic = JSON.parse((await cli('devices', 'add', 'attic-pi', '--tag', 'attic', '--json')).stdout);
    const id = shelf.device.id;
    shelfClient = await connectDevice(server.mqttUrl, { clientId: id, username: id, password: shelf.secret });
    await announceDevice(shelfClient, id, {
      hostname: 'shelf-pi',
      slots: [
        { name: 'a', artifact: 'app', version: '1.2.0', active: true },
        { name: 'b', artifact: 'app', version: '1.1.0', active: false },
      ],
    });
    const health = {
      at: Date.now(),
      uptimeSeconds: 12_000.4,
      load: [0.6198401765980229, 0.4, 0.31],
      memory: { totalBytes: 4 * 2 ** 30, availableBytes: 2 ** 30 },
      disk: { totalBytes: 8 * 2 ** 30, freeBytes: 2 * 2 ** 30 },
      cpuTemperatureCelsius: 48.53,
      agentRssBytes: 30 * 2 ** 20,
    };
    await shelfClient.publishAsync(deviceTopic(id, 'health'), JSON.stringify(health), { qos: 1 });
    await eventually('shelf-pi online with health', async () => {
      const { body } = await server.api<{ online: boolean; latestHealth: unknown }>(
        'GET',
        `/api/v1/devices/${id}`,
      );
      return body.online && body.latestHealth !== null;
    });
  });

  afterAll(async () => {
    await shelfClient?.endAsync(true);
    await server?.dispose();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('refuses a duplicate device name unless --allow-duplicate', async () => {
    const refused = await failing('devices', 'add', 'shelf-pi');
    expect(refused.stderr).toContain(
      'POST /api/v1/devices failed (409): a device named shelf-pi already exists',
    );
    const { stdout } = await cli('devices', 'add', 'shelf-pi', '--allow-duplicate', '--json');
    const duplicate = JSON.parse(stdout) as CreatedDevice;
    expect(duplicate.device.name).toBe('shelf-pi');
    await cli('devices', 'revoke', duplicate.device.id);
    await cli('devices', 'delete', duplicate.device.id);
  });

  it('lists devices with their running version', async () => {
    const { stdout } = await cli('devices', 'list');
    expect(stdout).toMatch(/^ID\s+NAME\s+STATUS\s+BOARD\s+VERSION\s+TAGS\s+LAST SEEN$/m);
    expect(stdout).toMatch(
      new RegExp(`^${shelf.device.id}\\s+shelf-pi\\s+online\\s+rpi-4b\\s+1\\.2\\.0\\s+shelf\\s`, 'm'),
    );
    expect(stdout).toMatch(
      new RegExp(`^${attic.device.id}\\s+attic-pi\\s+offline\\s+-\\s+-\\s+attic\\s`, 'm'),
    );
  });

  it('shows versions and health with numbers as people read them', async () => {
    const { stdout } = await cli('devices', 'show', shelf.device.id);
    expect(stdout).toContain('  version:   1.2.0\n');
    expect(stdout).toContain('  slots:     a: app 1.2.0 (active), b: app 1.1.0\n');
    expect(stdout).toContain('uptime 3h 20m, load 0.62 0.40 0.31, memory 1.0 GiB free of 4.0 GiB (25%)');
    expect(stdout).toContain('disk 2.0 GiB free of 8.0 GiB (25%), temperature 48.5 °C, agent RSS 30.0 MiB');
    expect(stdout).not.toMatch(/\d\.\d{3,}/);
    expect(stdout).toContain('  deployments: none yet\n');
  });

  it('checks an artifact against the catalogue before hashing or uploading it', async () => {
    const file = join(workDir, 'app.tgz');
    writeFileSync(file, 'version one');
    const refused = await failing(
      'artifact',
      'push',
      file,
      '--kind',
      'app',
      '--version',
      '1.2',
      '--board',
      'rpi-5x',
    );
    expect(refused.stderr).toContain('--kind app: use one of app-bundle, mcu-firmware');
    expect(refused.stderr).toContain('--version 1.2: must be a semantic version such as 1.2.0');
    expect(refused.stderr).toContain('--board rpi-5x: not in the board catalogue');
    expect(refused.stderr).not.toContain('hashing');
    expect(refused.stderr).not.toContain('?');
    expect((await server.api<{ artifacts: Artifact[] }>('GET', '/api/v1/artifacts')).body.artifacts).toEqual(
      [],
    );

    const pushed = JSON.parse(
      (
        await cli(
          'artifact',
          'push',
          file,
          '--kind',
          'app-bundle',
          '--version',
          '1.2.0',
          '--board',
          'rpi-4b',
          '--json',
        )
      ).stdout,
    ) as Artifact;
    writeFileSync(file, 'version one, changed');
    const conflict = await failing(
      'artifact',
      'push',
      file,
      '--kind',
      'app-bundle',
      '--version',
      '1.2.0',
      '--board',
      'rpi-4b',
    );
    expect(conflict.stderr).toContain(`app 1.2.0 already exists (${pushed.id}) with different content`);
    expect(conflict.stderr).not.toContain('uploading');

    const { stdout: created } = await cli(
      'release',
      'create',
      'app-1.2.0',
      '--artifact',
      `rpi-4b=${pushed.id}`,
    );
    expect(created).toMatch(/^Created release app-1\.2\.0 \(rel-/);
    const { stdout: list } = await cli('release', 'list');
    expect(list).toMatch(/^ID\s+NAME\s+CREATED\s+ARTIFACTS$/m);
    expect(list).toMatch(/^rel-\S+\s+app-1\.2\.0\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+rpi-4b=app 1\.2\.0$/m);
    const refusedRelease = await failing('release', 'create', 'broken', '--artifact', 'rpi-4b=art-nope');
    expect(refusedRelease.stderr).toContain('POST /api/v1/releases failed (400)');
  });

  it('warns when a rollout matches no device or only offline ones, and shows the deployment on the device', async () => {
    const none = await cli('rollout', 'create', 'app-1.2.0', '--tag', 'nowhere', '--dry-run');
    expect(none.stderr).toContain('warning: no device matches the target');
    const offline = await cli('rollout', 'create', 'app-1.2.0', '--tag', 'attic', '--dry-run');
    expect(offline.stderr).toContain('warning: all 1 matching device(s) are offline');
    const online = await cli('rollout', 'create', 'app-1.2.0', '--tag', 'shelf', '--dry-run');
    expect(online.stderr).toBe('');

    const started = await cli('rollout', 'create', 'app-1.2.0', '--tag', 'attic');
    expect(started.stderr).toContain('warning: all 1 matching device(s) are offline');
    expect(started.stdout).toMatch(/^Started rollout ro-/);
    const { stdout } = await cli('devices', 'show', attic.device.id);
    expect(stdout).toMatch(
      /deployments \(newest first\):\n {4}\S+ ago\s+app-1\.2\.0 \(not sent\): failed — .+ \(rollout app-1\.2\.0 rollout, ro-/,
    );
  });

  it('renames, refuses to delete an unrevoked device, then revokes and deletes it', async () => {
    const { stdout: renamed } = await cli('devices', 'rename', attic.device.id, 'loft-pi');
    expect(renamed).toBe(`Renamed ${attic.device.id}: attic-pi → loft-pi\n`);
    const taken = await failing('devices', 'rename', attic.device.id, 'shelf-pi');
    expect(taken.stderr).toContain('(409)');
    const refused = await failing('devices', 'delete', attic.device.id);
    expect(refused.stderr).toContain(`revoke it first (boardfleet devices revoke ${attic.device.id})`);
    await cli('devices', 'revoke', attic.device.id);
    const { stdout: deleted } = await cli('devices', 'delete', attic.device.id);
    expect(deleted).toBe(`Deleted ${attic.device.id} (loft-pi)\n`);
    const gone = await failing('devices', 'show', attic.device.id);
    expect(gone.stderr).toContain(`GET /api/v1/devices/${attic.device.id} failed (404)`);
  });

  it.each(['devices', 'tokens', 'artifact', 'release'])('shows examples in `%s --help`', async (group) => {
    const { stdout } = await cli(group, '--help');
    expect(stdout).toMatch(new RegExp(`Examples:\\n {2}boardfleet ${group} `));
  });
});
