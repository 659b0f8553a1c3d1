/**
 * Configuration variables end to end: a real server, a real agent process running an app bundle
 * that writes its environment to a file each time it starts, the real CLI, and `boardfleet
 * simulate`. A fleet value, overridden by a tag value, overridden by a device value, each reaches
 * the app through a restart without a new release; the device reports the config it applied.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedDevice, DeviceDetails, DevicePage } from '../../protocol/api/devices.ts';
import type { DeviceConfig } from '../../protocol/api/config-variables.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { cliRunner, type CliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'rpi-4b';

/** What the app wrote on one start: its pid and the variables the test looks at. */
interface AppStart {
  pid: number;
  LEVEL?: string;
  API_TOKEN?: string;
  BOARDFLEET_NOTE?: string;
  APP_VERSION?: string;
}

/** An app that appends its pid and environment to `envFile` each time it starts, then stays up. */
const envWritingApp = (envFile: string) => `
const { appendFileSync } = require('node:fs');
const { LEVEL, API_TOKEN, BOARDFLEET_NOTE, APP_VERSION } = process.env;
appendFileSync(${JSON.stringify(envFile)}, JSON.stringify({ pid: process.pid, LEVEL, API_TOKEN, BOARDFLEET_NOTE, APP_VERSION }) + '\\n');
setInterval(() => {}, 1 << 30);
`;

describe('configuration variables with a real agent', () => {
  let server: TestServer;
  let cli: CliRunner;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  const agentDir = mkdtempSync(join(tmpdir(), 'boardfleet-config-agent-'));
  const envFile = join(agentDir, 'app-env.jsonl');

  const starts = (): AppStart[] =>
    existsSync(envFile)
      ? readFileSync(envFile, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as AppStart)
      : [];
  /** Waits for the app to start again (a new line) with the variable as expected; returns that start. */
  const nextStart = (after: number, what: string, check: (start: AppStart) => boolean) =>
    eventually(`the app restarted with ${what}`, () => starts().slice(after).find(check), 30_000);
  const details = async () => (await server.api<DeviceDetails>('GET', `/api/v1/devices/${deviceId}`)).body;
  const applied = () =>
    eventually('the device reports the config applied', async () => (await details()).configApplied, 30_000);

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    const created = await server.api<CreatedDevice>('POST', '/api/v1/devices', {
      name: 'cfg-pi',
      board: BOARD,
      tags: ['bench', 'lab'],
    });
    expect(created.status).toBe(201);
    deviceId = created.body.device.id;
    agent = startAgentProcess([
      '--server',
      server.httpUrl,
      '--device-id',
      deviceId,
      '--secret-file',
      secretFile(created.body.secret),
      '--board',
      BOARD,
      '--data-dir',
      agentDir,
      '--heartbeat',
      '1',
    ]);
    agent.on('error', (error) => {
      throw error;
    });
    const { release } = await releaseAppBundle(server, BOARD, {
      name: 'envapp',
      version: '1.0.0',
      script: envWritingApp(envFile),
    });
    await eventually('agent online', async () => (await details()).online, 30_000);
    const rollout = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { deviceIds: [deviceId] },
      waves: [{ name: 'all', percent: 100, soakSeconds: 0 }],
    });
    expect(rollout.status).toBe(201);
    await eventually(
      'the app bundle committed',
      async () =>
        (await server.api<{ state: string }>('GET', `/api/v1/rollouts/${rollout.body.id}`)).body.state ===
        'completed',
      60_000,
    );
    await eventually('the app started', () => starts().length > 0, 30_000);
  });

  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGTERM');
    await server?.dispose();
    rmSync(agentDir, { recursive: true, force: true });
  });

  it('overrides a fleet value by a tag value and a device value, each seen by the restarted app without a new release', async () => {
    const first = starts().at(-1) as AppStart;
    expect(first.LEVEL).toBeUndefined();
    const deploymentsBefore = (
      await server.api<{ deployments: unknown[] }>('GET', `/api/v1/devices/${deviceId}/deployments`)
    ).body.deployments.length;

    let seen = starts().length;
    const setFleet = await cli.ok('config', 'set', 'LEVEL=fleet');
    expect(setFleet.stdout).toBe('Set LEVEL=fleet for the fleet\n');
    const fleetStart = await nextStart(seen, 'the fleet value', (start) => start.LEVEL === 'fleet');
    expect(fleetStart.pid).not.toBe(first.pid);
    expect(fleetStart.APP_VERSION).toBe('1.0.0');
    await applied();

    seen = starts().length;
    await cli.ok('config', 'set', 'LEVEL=bench', '--tag', 'bench');
    await nextStart(seen, 'the tag value', (start) => start.LEVEL === 'bench');

    seen = starts().length;
    // By name: the CLI finds the device.
    await cli.ok('config', 'set', 'LEVEL=device', '--device', 'cfg-pi');
    await nextStart(seen, 'the device value', (start) => start.LEVEL === 'device');
    await applied();

    const listed = await cli.ok('config', 'list', '--device', 'cfg-pi');
    expect(listed.stdout).toMatch(/LEVEL\s+device\s+device/);
    expect(listed.stdout).toContain('config: applied');
    const shown = JSON.parse((await cli.ok('devices', 'show', deviceId, '--json')).stdout) as DeviceDetails;
    expect(shown.configApplied).toBe(true);
    expect((await cli.ok('devices', 'show', deviceId)).stdout).toContain('config:    applied');

    // Unset at the device: the tag's value is back.
    seen = starts().length;
    await cli.ok('config', 'unset', 'LEVEL', '--device', deviceId);
    await nextStart(seen, 'the tag value again', (start) => start.LEVEL === 'bench');

    // No new release and no new deployment: the same version runs.
    const after = await details();
    expect(after.runningVersion).toBe('1.0.0');
    expect(
      (await server.api<{ deployments: unknown[] }>('GET', `/api/v1/devices/${deviceId}/deployments`)).body
        .deployments,
    ).toHaveLength(deploymentsBefore);
  });

  it('gives the app a secret it never shows again, and keeps Boardfleet’s own settings out of the app', async () => {
    let seen = starts().length;
    const set = await cli.ok('config', 'set', 'API_TOKEN=hunter2', '--secret', '--json');
    expect(set.stdout).not.toContain('hunter2');
    expect(JSON.parse(set.stdout)).toMatchObject({ name: 'API_TOKEN', secret: true });
    await nextStart(seen, 'the secret', (start) => start.API_TOKEN === 'hunter2');

    const list = await cli.ok('config', 'list');
    expect(list.stdout).toMatch(/fleet\s+API_TOKEN\s+\(secret\)/);
    expect(list.stdout).not.toContain('hunter2');
    const effective = JSON.parse(
      (await cli.ok('config', 'list', '--device', deviceId, '--json')).stdout,
    ) as DeviceConfig;
    expect(effective.variables.find((variable) => variable.name === 'API_TOKEN')).toEqual({
      name: 'API_TOKEN',
      secret: true,
      source: 'fleet',
    });
    expect(JSON.stringify(effective)).not.toContain('hunter2');

    seen = starts().length;
    await cli.ok('config', 'set', 'BOARDFLEET_NOTE=for-the-agent');
    await applied();
    const latest = starts().slice(seen).at(-1);
    // The agent took it (the hash it reports matches) but the app's environment does not have it.
    expect(latest?.BOARDFLEET_NOTE).toBeUndefined();
    expect((await server.api<DeviceConfig>('GET', `/api/v1/devices/${deviceId}/config`)).body.applied).toBe(
      true,
    );
  });

  it('refuses a name that is not an environment variable name, in the CLI and the API', async () => {
    const refused = await cli.failing('config', 'set', 'DB-HOST=10.0.0.5');
    expect(refused.stderr).toContain(
      'DB-HOST is not a valid environment variable name: letters, digits and _, not starting with a digit',
    );
    const api = await server.api<{ code: string; message: string }>(
      'PUT',
      '/api/v1/config/variables/DB-HOST',
      {
        value: 'x',
      },
    );
    expect(api.status).toBe(400);
    expect(api.body.code).toBe('invalid-config-name');
    expect((await cli.failing('config', 'set', 'A=1', '--fleet', '--tag', 'x')).stderr).toContain(
      'choose one scope, not --fleet and --tag',
    );
    expect((await cli.failing('config', 'list', '--device', 'no-such-device')).stderr).toContain(
      'no device has the id or name no-such-device',
    );
  });

  it('has simulated devices report the config they applied, like a real agent', async () => {
    const simDir = mkdtempSync(join(tmpdir(), 'boardfleet-config-sim-'));
    const simulator: ChildProcess = spawn(
      process.execPath,
      [CLI, 'simulate', '--devices', '1', '--prefix', 'cfgsim', '--data-dir', simDir, '--heartbeat', '1'],
      {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
        stdio: 'ignore',
      },
    );
    simulator.on('error', (error) => {
      throw error;
    });
    try {
      const simulated = await eventually(
        'the simulated device online',
        async () =>
          (await server.api<DevicePage>('GET', '/api/v1/devices?q=cfgsim-0001')).body.devices.find(
            (device) => device.online,
          ),
        30_000,
      );
      const simApplied = () =>
        eventually(
          'the simulated device reports its config applied',
          async () =>
            (await server.api<DeviceDetails>('GET', `/api/v1/devices/${simulated.id}`)).body.configApplied,
          30_000,
        );
      await simApplied();
      await cli.ok('config', 'set', 'LEVEL=sim', '--device', simulated.id);
      const config = (await server.api<DeviceConfig>('GET', `/api/v1/devices/${simulated.id}/config`)).body;
      expect(config.variables.find((variable) => variable.name === 'LEVEL')?.source).toBe('device');
      await simApplied();
      expect(
        (await server.api<DeviceConfig>('GET', `/api/v1/devices/${simulated.id}/config`)).body.reportedHash,
      ).toBe(config.hash);
    } finally {
      await stopProcess(simulator, 'SIGINT');
      rmSync(simDir, { recursive: true, force: true });
    }
  });
});
