import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDeployments, DevicePage } from '../../protocol/api/devices.ts';
import type { FleetSummary } from '../../protocol/api/fleet.ts';
import type { RolloutStatus } from '../../protocol/api/rollouts.ts';
import { CLI, stopProcess } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { launchChromium } from '../support/chromium.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type InProcessAgent, startInProcessFleet } from '../support/in-process-agents.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const run = promisify(execFile);
const DIST_INDEX = fileURLToPath(new URL('../../server/web/dist/index.html', import.meta.url));
const BOARD = 'rpi-4b';
const TAG = 'truth';
/** Three real agents and three simulated ones (`boardfleet simulate`), under one tag. */
const EACH = 3;
/** Real agents and a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 120_000;

/**
 * Issue 15 item 7: after a rollout with `--rollback-on-abort` is aborted mid-wave, the rollout,
 * the device list, each device, the fleet summary, the CLI and the dashboard tell the same story:
 * the moved devices are rolled back (not failed) and run, and are meant to run, the release
 * before; the wave that was cut short reads "aborted".
 */
describe('one truth after an aborted rollout with rollback: real agents and the simulator', () => {
  let server: TestServer;
  let agents: InProcessAgent[] = [];
  let simulator: ReturnType<typeof spawn> | null = null;
  let browser: Browser | null = null;
  const simulatorData = mkdtempSync(join(tmpdir(), 'boardfleet-rollback-truth-'));

  const cli = async (...args: string[]) =>
    (
      await run(process.execPath, [CLI, ...args], {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
      })
    ).stdout;
  const devices = async () =>
    (await server.api<DevicePage>('GET', `/api/v1/devices?tag=${TAG}&limit=100`)).body.devices;
  const rollout = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const allRun = (version: string) =>
    eventually(
      `every ${TAG} device running and meant to run ${version}`,
      async () => {
        const list = await devices();
        return (
          list.length === 2 * EACH &&
          list.every((d) => d.runningVersion === version && d.desiredVersion === version) &&
          list
        );
      },
      SLOW,
    );

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    agents = await startInProcessFleet(server, { tag: TAG, count: EACH, board: BOARD });
    simulator = spawn(
      process.execPath,
      [
        CLI,
        'simulate',
        ...['--devices', String(EACH), '--prefix', `${TAG}-sim`, '--tag', TAG, '--board', BOARD],
        ...['--heartbeat', '1', '--data-dir', simulatorData],
      ],
      {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
        stdio: 'ignore',
      },
    );
    await eventually(
      'real and simulated devices online with their inventory',
      async () => {
        const list = await devices();
        return list.length === 2 * EACH && list.every((d) => d.online && d.inventory?.board === BOARD);
      },
      SLOW,
    );
    await releaseAppBundle(server, BOARD, { name: 'app', version: '1.1.0' });
    await releaseAppBundle(server, BOARD, { name: 'app', version: '1.2.0' });
  }, SLOW * 2);

  afterAll(async () => {
    await browser?.close();
    if (simulator) await stopProcess(simulator, 'SIGINT');
    await Promise.all(agents.map((agent) => agent.dispose()));
    await server?.dispose();
    rmSync(simulatorData, { recursive: true, force: true });
  });

  it(
    'aborted mid-wave: CLI, API and dashboard agree on rolled-back devices running the release before',
    async () => {
      const first = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
        release: 'app-1.1.0',
        target: { tags: [TAG] },
        waves: [{ percent: 100, soakSeconds: 1 }],
      });
      await eventually(
        'the first rollout to complete',
        async () => (await rollout(first.body.id)).state === 'completed',
        SLOW,
      );
      await allRun('1.1.0');

      // One device at a time with a soak, so the second wave can be caught half way.
      const started = await cli(
        ...['rollout', 'create', 'app-1.2.0', '--tag', TAG, '--waves', '50,100'],
        ...['--soak', '3', '--max-parallel', '1', '--rollback-on-abort'],
      );
      const id = /Started rollout (\S+)\./.exec(started)?.[1] as string;
      expect(id).toMatch(/^ro/);
      await eventually(
        'the second wave half way: one device committed, one still queued',
        async () => {
          const wave = (await rollout(id)).waves[1];
          return wave?.state === 'running' && wave.counts.committed >= 1 && wave.counts.queued >= 1;
        },
        SLOW,
      );
      expect((await server.api('POST', `/api/v1/rollouts/${id}/abort`)).status).toBe(200);

      // The rollout: every device it moved is rolled back (none failed), the queued one never
      // started, and the wave that was cut short reads "aborted".
      const aborted = await rollout(id);
      expect(aborted.state).toBe('aborted');
      expect(aborted.waves.map((wave) => wave.state)).toEqual(['succeeded', 'aborted']);
      const rolledBack = aborted.devices.filter((d) => d.state === 'rolled-back');
      const queued = aborted.devices.filter((d) => d.state === 'queued');
      expect(rolledBack.length + queued.length).toBe(2 * EACH);
      expect(queued.length).toBeGreaterThanOrEqual(1);
      expect(aborted.waves.reduce((sum, wave) => sum + wave.counts.rolledBack, 0)).toBe(rolledBack.length);

      // The devices: each runs what its agent reports, and is meant to run, the release before;
      // real agents and simulated ones alike.
      const list = await allRun('1.1.0');
      const simulated = new Set(list.filter((d) => d.name.startsWith(`${TAG}-sim`)).map((d) => d.id));
      expect(simulated.size).toBe(EACH);
      expect(rolledBack.some((d) => simulated.has(d.deviceId))).toBe(true);
      expect(rolledBack.some((d) => !simulated.has(d.deviceId))).toBe(true);
      const summary = (await server.api<FleetSummary>('GET', '/api/v1/fleet/summary')).body;
      expect(summary.byVersion).toEqual({ '1.1.0': 2 * EACH });
      const moved = rolledBack[0]!.deviceId;
      const history = (await server.api<DeviceDeployments>('GET', `/api/v1/devices/${moved}/deployments`))
        .body;
      expect(history.deployments.map((d) => [d.release, d.version, d.outcome])).toEqual([
        ['app-1.2.0', '1.2.0', 'rolled-back'],
        ['app-1.1.0', '1.1.0', 'committed'],
      ]);

      // The CLI: rolled-back devices drawn as rolled back, the cut-short wave as aborted.
      const statusText = await cli('rollout', 'status', id);
      expect(statusText).toMatch(/^ {2}100% +aborted /m);
      expect(statusText.match(/^ {2}< rolled back {2}/gm)).toHaveLength(rolledBack.length);
      expect(statusText).not.toMatch(/^ {2}x failed/m);
      const shown = JSON.parse(await cli('devices', 'show', moved, '--json')) as {
        runningVersion: string;
        desiredVersion: string;
      };
      expect(shown).toMatchObject({ runningVersion: '1.1.0', desiredVersion: '1.1.0' });
      // Running what it is meant to run: no "(desired …)" beside the version.
      expect(await cli('devices', 'show', moved)).toContain('  version:   1.1.0\n');
      const listed = JSON.parse(await cli('devices', 'list', '--tag', TAG, '--json')) as Array<{
        runningVersion: string;
        desiredVersion: string;
      }>;
      expect(new Set(listed.map((d) => `${d.runningVersion}/${d.desiredVersion}`))).toEqual(
        new Set(['1.1.0/1.1.0']),
      );
      const table = await cli('devices', 'list', '--tag', TAG);
      expect(table).toContain('1.1.0');
      expect(table).not.toContain('1.2.0');

      // The dashboard, in Chromium: the device page, the rollout page and the fleet page.
      if (!existsSync(DIST_INDEX))
        throw new Error(`the dashboard is not built (${DIST_INDEX} is missing): run npm run build:web`);
      browser = await launchChromium();
      const page: Page = await (await browser.newContext()).newPage();
      await page.goto(server.httpUrl);
      await page.getByLabel('Operator token').fill(server.adminToken);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.goto(`${server.httpUrl}/devices/${moved}`);
      const poll = <T>(read: () => Promise<T>) => expect.poll(read, { timeout: SLOW, interval: 100 });
      await poll(() => page.getByTestId('desired-version').innerText()).toBe(
        '1.1.0 (rolled back from 1.2.0)',
      );
      await poll(() => page.getByTestId('current-version').innerText()).toBe('1.1.0');
      await page.goto(`${server.httpUrl}/rollouts/${id}`);
      await poll(() =>
        page
          .getByTestId('wave-progress')
          .evaluateAll((waves) => waves.map((wave) => wave.getAttribute('data-wave-state'))),
      ).toEqual(['succeeded', 'aborted']);
      await page.goto(server.httpUrl);
      await poll(() => page.getByTestId('device-row').count()).toBe(2 * EACH);
      const fleetTable = await page.locator('table.devices').innerText();
      expect(fleetTable).toContain('1.1.0');
      expect(fleetTable).not.toContain('1.2.0');
    },
    SLOW * 4,
  );

  it(
    'rollout status --watch follows a rollout to its end with elapsed time, soak countdown and ETA, and exits 0',
    async () => {
      const { body } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
        release: 'app-1.2.0',
        target: { tags: [TAG] },
        waves: [
          { percent: 50, soakSeconds: 3, maxParallel: 1 },
          { percent: 100, soakSeconds: 3, maxParallel: 1 },
        ],
      });
      const { stdout } = await run(process.execPath, [CLI, 'rollout', 'status', body.id, '--watch'], {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
        timeout: SLOW * 2,
      });
      expect(stdout).toMatch(/elapsed \d+s/);
      expect(stdout).toMatch(/soak \d+s left \(1 soaking\)/);
      expect(stdout).toMatch(/ETA (\d+[smh]|unknown)/);
      expect(stdout).toMatch(/: completed \(took /);
      expect((await rollout(body.id)).state).toBe('completed');
    },
    SLOW * 3,
  );
});
