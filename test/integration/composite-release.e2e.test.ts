import { mkdtempSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { probeBoard } from '../../mcu/probe/probe-board.ts';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import type { DeviceDetails } from '../../protocol/api/devices.ts';
import type { RolloutList } from '../../protocol/api/rollouts.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { buildAppBundle } from '../support/app-bundles.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type RolloutStatus, waitForRolloutToSettle } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const temporary = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));
const GATEWAY_BOARD = 'rpi-4b';
/** Real agent, real flashing of a simulated Uno, on a loaded two-core machine: patient. */
const SLOW = 180_000;

/**
 * Issue 19 item 6, gateway + MCU releases: one release carries a Pi's app bundle and the firmware
 * for the Uno attached to it. A real server, a real agent process (app-bundle and mcu-serial
 * strategies) and a simulated Uno running the real optiboot on a pty.
 */
describe('composite releases: a gateway app and its attached board firmware as one release', () => {
  let server: TestServer;
  let uno: SimulatedBoard;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  let agentData: string;
  let firmata: string;
  let blink: string;

  beforeAll(async () => {
    const built = await Promise.all([
      buildFirmware({ recipe: 'firmata', board: 'uno', outDir: temporary('composite-firmata-') }),
      buildFirmware({
        sketchPath: new URL('../../builder/mcu/fixtures/blink', import.meta.url).pathname,
        board: 'uno',
        outDir: temporary('composite-blink-'),
      }),
    ]);
    firmata = built[0].hexPath;
    blink = built[1].hexPath;
    server = await startTestServer(sqliteBackend);
    uno = await startSimulatedBoard({ board: 'uno', stateDir: temporary('composite-uno-') });
    const { body: token } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'composite',
    });
    agent = startAgentProcess([
      ...['--server', server.httpUrl, '--provisioning-token-file', secretFile(token.token)],
      ...['--name', 'gateway', '--tag', 'composite', '--board', GATEWAY_BOARD],
      ...['--data-dir', (agentData = temporary('composite-agent-')), '--heartbeat', '1'],
      ...['--attached-board', 'uno', '--attached-port', uno.portPath],
    ]);
    deviceId = await eventually(
      'the gateway online with its board in the inventory',
      async () =>
        (
          await server.api<{ devices: DeviceDetails[] }>('GET', '/api/v1/devices?tag=composite&online=true')
        ).body.devices.find((device) => (device.inventory?.attachedBoards.length ?? 0) > 0)?.id,
      60_000,
    );
  }, SLOW);
  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGTERM');
    await uno?.stop();
    await server?.dispose();
  });
  afterAll(() => {
    if (process.env.DEBUG_E2E) console.log(agent?.output());
  });

  /** Pushes the parts, makes one release of them and rolls it out to the gateway. */
  async function rollOut(
    version: string,
    parts: { app?: { unhealthy?: boolean }; firmware?: { hex: string; boards: string[] } },
  ): Promise<RolloutStatus> {
    const artifacts: Record<string, string> = {};
    if (parts.app) {
      const bundle = await buildAppBundle({ name: 'gateway-app', version, ...parts.app });
      const app = await uploadArtifact(server, bundle, {
        name: 'gateway-app',
        version,
        boards: [GATEWAY_BOARD],
      });
      artifacts[GATEWAY_BOARD] = app.id;
    }
    if (parts.firmware) {
      const firmware = await uploadArtifact(server, readFileSync(parts.firmware.hex), {
        name: 'gateway-firmware',
        version,
        boards: parts.firmware.boards,
        kind: 'mcu-firmware',
      });
      for (const board of parts.firmware.boards) artifacts[board] = firmware.id;
    }
    const release = `gateway-${version}`;
    await server.api('POST', '/api/v1/releases', { name: release, artifacts });
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: ['composite'] },
      waves: [{ percent: 100, soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 150 }],
    });
    return waitForRolloutToSettle(server, created.id, SLOW - 10_000);
  }

  const inventoryOf = async () =>
    (await server.api<DeviceDetails>('GET', `/api/v1/devices/${deviceId}`)).body.inventory;

  it(
    'installs the app and flashes the attached board as one deployment, and the rollout names both parts',
    async () => {
      const done = await rollOut('1.0.0', { app: {}, firmware: { hex: firmata, boards: ['uno'] } });
      expect(done.state).toBe('completed');
      expect(done.devices).toHaveLength(1);
      expect(done.devices[0]).toMatchObject({ deviceId, state: 'committed' });
      expect(done.devices[0]!.partArtifactIds).toHaveLength(1);
      const inventory = await eventually('the inventory naming the app and the firmware', async () => {
        const current = await inventoryOf();
        return current?.attachedBoards[0]?.firmware && current.slots.some((slot) => slot.version === '1.0.0')
          ? current
          : undefined;
      });
      expect(inventory.attachedBoards[0]).toMatchObject({ board: 'uno', firmware: 'BoardfleetFirmata' });
    },
    SLOW,
  );

  it(
    'fails, touching nothing, a device whose attached board the release has no firmware for',
    async () => {
      const done = await rollOut('1.0.1', { app: {}, firmware: { hex: firmata, boards: ['nano'] } });
      expect(done.devices[0]).toMatchObject({ deviceId, state: 'failed', partArtifactIds: [] });
      expect(done.devices[0]!.reason).toBe(
        `release gateway-1.0.1 has no firmware for the uno attached on ${uno.portPath}`,
      );
      expect(readlinkSync(join(agentData, 'app', 'current'))).toMatch(/gateway-app-1\.0\.0$/);
    },
    SLOW,
  );

  it(
    'rolls back every part when the firmware fails its Firmata probe: the app returns to 1.0.0 too',
    async () => {
      const done = await rollOut('1.1.0', { app: {}, firmware: { hex: blink, boards: ['uno'] } });
      expect(done.state).toBe('paused');
      expect(['failed', 'rolled-back']).toContain(done.devices[0]!.state);
      expect(done.devices[0]!.reason).toMatch(/gateway-firmware 1\.1\.0: board does not answer Firmata/);
      await eventually(
        'the app back on 1.0.0',
        async () => {
          const inventory = await inventoryOf();
          const app = inventory?.slots.find((slot) => slot.active);
          return app?.version === '1.0.0' ? app : undefined;
        },
        60_000,
      );
      // The app runs from its 1.0.0 release again, not only in what the inventory says.
      expect(readlinkSync(join(agentData, 'app', 'current'))).toMatch(/gateway-app-1\.0\.0$/);
      // The Uno got its known-good firmware back: it answers Firmata again.
      await stopProcess(agent, 'SIGTERM');
      const probe = await probeBoard({ portPath: uno.portPath });
      expect(probe).toMatchObject({ status: 'firmata', firmware: { name: 'BoardfleetFirmata' } });
    },
    SLOW,
  );

  it('names both parts in `boardfleet rollout status`, under the header and beside the device', async () => {
    const { body } = await server.api<RolloutList>('GET', '/api/v1/rollouts');
    const completed = body.rollouts.find((rollout) => rollout.state === 'completed');
    expect(completed).toBeDefined();
    const cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    const { stdout } = await cli.ok('rollout', 'status', completed!.id);
    expect(stdout).toContain('parts: gateway-app 1.0.0 (rpi-4b), gateway-firmware 1.0.0 (uno)');
    expect(stdout).toMatch(
      /^ {2}gateway \(dev-\S+\) +committed +gateway-app 1\.0\.0, gateway-firmware 1\.0\.0$/m,
    );
  });
});
