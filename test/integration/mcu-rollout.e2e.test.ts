import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SimulatedBoard, startSimulatedBoard } from '../../mcu/simulator/simulated-board.ts';
import { buildFirmware } from '../../builder/mcu/build-firmware.ts';
import { probeBoard } from '../../mcu/probe/probe-board.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type RolloutStatus, waitForRolloutToSettle } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const temporary = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/**
 * The agent's `mcu-serial` strategy end to end: a real server, a real agent process, and a
 * simulated Uno (simavr running the real optiboot) on a real pty as the attached board.
 */
describe('firmware rollouts to an Arduino attached to a device', () => {
  let server: TestServer;
  let uno: SimulatedBoard;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    uno = await startSimulatedBoard({ board: 'uno', stateDir: temporary('mcu-e2e-uno-') });
    const { body: token } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'mcu',
    });
    agent = startAgentProcess([
      '--server',
      server.httpUrl,
      '--provisioning-token-file',
      secretFile(token.token),
      '--name',
      'bench-gateway',
      '--tag',
      'mcu',
      '--data-dir',
      temporary('mcu-e2e-agent-'),
      '--heartbeat',
      '1',
      '--attached-board',
      'uno',
      '--attached-port',
      uno.portPath,
    ]);
    deviceId = await eventually(
      'the gateway online',
      async () => {
        const { body } = await server.api<{ devices: DeviceRecord[] }>(
          'GET',
          '/api/v1/devices?tag=mcu&online=true',
        );
        return body.devices[0]?.id;
      },
      30_000,
    );
  });
  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGTERM');
    await uno?.stop();
    await server?.dispose();
  });

  afterAll(() => {
    if (process.env.DEBUG_E2E) console.log(agent?.output());
  });

  async function rollOut(name: string, version: string, hexPath: string): Promise<RolloutStatus> {
    const artifact = await uploadArtifact(server, readFileSync(hexPath), {
      name,
      version,
      boards: ['uno'],
      kind: 'mcu-firmware',
    });
    const release = `${name}-${version}`;
    await server.api('POST', '/api/v1/releases', { name: release, artifacts: { uno: artifact.id } });
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release,
      target: { tags: ['mcu'] },
      waves: [{ percent: 100, soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 120 }],
    });
    return waitForRolloutToSettle(server, created.id, 120_000);
  }

  it('flashes our Firmata firmware onto the board, checks it with the Firmata probe, and commits it', async () => {
    const firmata = await buildFirmware({
      recipe: 'firmata',
      board: 'uno',
      outDir: temporary('mcu-e2e-firmata-'),
    });
    const done = await rollOut('firmata', '1.0.0', firmata.hexPath);
    expect(done.state).toBe('completed');
    expect(done.devices).toMatchObject([{ deviceId, state: 'committed' }]);
    const device = await eventually('inventory naming the firmware', async () => {
      const { body } = await server.api<DeviceRecord>('GET', `/api/v1/devices/${deviceId}`);
      return body.inventory?.attachedBoards[0]?.firmware ? body : undefined;
    });
    expect(device.inventory?.attachedBoards).toEqual([
      { port: uno.portPath, board: 'uno', firmware: 'BoardfleetFirmata', firmwareVersion: '1.0' },
    ]);
  });

  it('rolls back a firmware that never answers Firmata, and the board runs the old one again', async () => {
    const blink = await buildFirmware({
      sketchPath: new URL('../../builder/mcu/fixtures/blink', import.meta.url).pathname,
      board: 'uno',
      outDir: temporary('mcu-e2e-blink-'),
    });
    const done = await rollOut('firmata', '1.1.0', blink.hexPath);
    expect(done.state).toBe('paused');
    expect(done.devices).toHaveLength(1);
    // The wave trips on the failure; the agent's rollback may already be reported by now.
    expect(done.devices[0]).toMatchObject({ deviceId });
    expect(['failed', 'rolled-back']).toContain(done.devices[0]!.state);
    expect(done.devices[0]!.reason).toMatch(/does not answer Firmata/);
    // The agent flashed the last known-good firmware back: the board answers Firmata again.
    await eventually(
      'the rollback reported',
      async () => {
        const { body } = await server.api<{ events: Array<{ type: string; data?: { state?: string } }> }>(
          'GET',
          `/api/v1/devices/${deviceId}/events?limit=50`,
        );
        return body.events.some(
          (event) => event.type === 'deployment' && event.data?.state === 'rolled-back',
        );
      },
      60_000,
    );
    await stopProcess(agent, 'SIGTERM');
    const probe = await probeBoard({ portPath: uno.portPath });
    expect(probe).toMatchObject({
      status: 'firmata',
      firmware: { name: 'BoardfleetFirmata' },
      selfTest: { passed: true },
    });
  });
});
