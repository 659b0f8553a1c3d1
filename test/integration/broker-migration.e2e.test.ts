import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage } from '../../protocol/api/devices.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import {
  BOARDFLEET_ENV_FILE,
  MOSQUITTO_CONF_FILE,
  MOSQUITTO_ENVIRONMENT,
} from '../../server/broker/mosquitto/mosquitto-config.ts';
import { deviceRoleName } from '../../server/broker/mosquitto/dynsec-acl.ts';
import { DynsecAdmin } from '../../server/broker/mosquitto/dynsec-admin.ts';
import { type AgentUnderTest, startSimulator, startTaggedAgents } from '../support/agent-fleet.ts';
import { stopProcess } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { parseEnvFile } from '../support/broker-modes.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { freePort, sqliteBackend } from '../support/databases.ts';
import { type MosquittoBroker, startMosquittoFromConfig } from '../support/mosquitto.ts';
import { connectionRefusal } from '../support/mqtt-device.ts';
import { rollOutToTag } from '../support/rollout-status.ts';
import { type ServerProcess, startServerProcess } from '../support/server-process.ts';
import { eventually } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const AGENTS = 'moved';
const SIMULATED = 'moved-sim';
/** Real agent processes and a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 150_000;

/**
 * Issue 14 item 3: a fleet registered on the embedded broker moves to Mosquitto with no re-flash
 * and no agent restart. The server holds only hashes of device secrets; each agent, refused by
 * the new broker, asks the server where its broker is with its credentials, and the server
 * registers it there as it answers.
 */
describe('moving a running fleet from the embedded broker to Mosquitto', () => {
  let server: ServerProcess;
  let mosquitto: MosquittoBroker | null = null;
  let admin: DynsecAdmin | null = null;
  let simulator: ReturnType<typeof startSimulator> | null = null;
  const workDir = mkdtempSync(join(tmpdir(), 'boardfleet-migration-'));
  const agents: AgentUnderTest[] = [];
  let revoked: { device: DeviceRecord; secret: string };

  const devicesTagged = async (tag: string) =>
    (await server.api<DevicePage>('GET', `/api/v1/devices?tag=${tag}&limit=100`)).body.devices;
  const allOnline = (tag: string, count: number, timeoutMs = SLOW) =>
    eventually(
      `${count} ${tag} devices online`,
      async () => {
        const devices = await devicesTagged(tag);
        return devices.length === count && devices.every((device) => device.online);
      },
      timeoutMs,
    );
  const fleetIds = async () =>
    [...(await devicesTagged(AGENTS)), ...(await devicesTagged(SIMULATED))].map((d) => d.id);

  beforeAll(async () => {
    server = await startServerProcess(sqliteBackend);
    const { body } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'before-the-move',
    });
    agents.push(...startTaggedAgents(server, body.token, { tag: AGENTS, board: BOARD, count: 2 }));
    simulator = startSimulator(server, {
      tag: SIMULATED,
      board: BOARD,
      count: 2,
      dataDir: join(workDir, 'sim'),
    });
    await allOnline(AGENTS, 2);
    await allOnline(SIMULATED, 2);
    const created = await server.api<{ device: DeviceRecord; secret: string }>('POST', '/api/v1/devices', {
      name: 'revoked-before-the-move',
    });
    revoked = created.body;
    expect((await server.api('POST', `/api/v1/devices/${revoked.device.id}/revoke`)).status).toBe(200);
  }, 180_000);

  afterAll(async () => {
    if (simulator) await stopProcess(simulator.process, 'SIGKILL');
    await Promise.all(agents.map((agent) => agent.dispose()));
    await admin?.close();
    await server?.dispose();
    await mosquitto?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('brings every device back online on Mosquitto, on the port the embedded broker used, with nothing restarted but the server', async () => {
    // The steps of README "Scale-out", moving a fleet: stop the server, configure and start
    // Mosquitto where the fleet's broker was, start the server with boardfleet.env.
    await server.kill('SIGTERM');
    const brokerDir = join(workDir, 'broker');
    await cliRunner({ cwd: workDir }).ok(
      ...['broker-config', 'mosquitto', '--out', brokerDir, '--port', String(server.mqttPort)],
      ...['--tls-port', String(await freePort()), '--data-dir', server.dataDir],
    );
    mosquitto = await startMosquittoFromConfig(join(brokerDir, MOSQUITTO_CONF_FILE));
    const env = parseEnvFile(readFileSync(join(brokerDir, BOARDFLEET_ENV_FILE), 'utf8'));
    await server.start({ ...env, LOG_LEVEL: 'info' });
    admin = await DynsecAdmin.connect({
      url: mosquitto.url,
      username: env[MOSQUITTO_ENVIRONMENT.adminUsername] ?? '',
      password: env[MOSQUITTO_ENVIRONMENT.adminPassword] ?? '',
    });
    expect(server.output()).toMatch(/4 device\(s\) registered before the switch/);

    const movedAt = Date.now();
    await allOnline(AGENTS, 2);
    await allOnline(SIMULATED, 2);
    for (const deviceId of await fleetIds()) {
      await eventually(
        `a heartbeat from ${deviceId} through Mosquitto`,
        async () =>
          (
            await server.api<{ samples: unknown[] }>(
              'GET',
              `/api/v1/devices/${deviceId}/health?from=${movedAt}`,
            )
          ).body.samples.length > 0,
        SLOW,
      );
    }
    // Bounded: the agents' backoff is at most 60 s (×1.5 jitter) between attempts.
    expect(Date.now() - movedAt).toBeLessThan(SLOW);
    expect(agents.every((agent) => agent.running)).toBe(true);
    expect(simulator?.process.exitCode, simulator?.output()).toBeNull();
  }, 240_000);

  it('gives each moved device its own client and role on Mosquitto, and logs each move', async () => {
    for (const deviceId of await fleetIds()) {
      expect(await admin!.getClient(deviceId)).toMatchObject({
        username: deviceId,
        clientId: deviceId,
        disabled: false,
        roles: [deviceRoleName(deviceId)],
      });
      expect(server.output()).toContain(`device ${deviceId} moved to`);
    }
  });

  it('rolls a release out to both moved agents, which commit it', async () => {
    const { release } = await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' });
    const done = await rollOutToTag(server, release, AGENTS, SLOW);
    expect(done.devices.map((device) => device.state)).toEqual(['committed', 'committed']);
    for (const agent of agents) {
      expect(agent.updateRecord()).toMatchObject({ state: 'committed', running: { version: '1.0.0' } });
    }
  }, 180_000);

  it('does not move a revoked device that asks with its old credentials', async () => {
    const { id } = revoked.device;
    const answer = await fetch(`${server.httpUrl}/api/v1/mqtt-endpoint`, {
      headers: { authorization: `Basic ${Buffer.from(`${id}:${revoked.secret}`).toString('base64')}` },
    });
    // The URL is no secret: the answer is the public one, and nothing else happens.
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { mqttUrl: string }).mqttUrl).toBe(
      `mqtt://127.0.0.1:${server.mqttPort}`,
    );
    expect(await admin!.getClient(id)).toBeNull();
    expect(
      await connectionRefusal(mosquitto!.url, { clientId: id, username: id, password: revoked.secret }),
    ).toMatch(/Not authorized|Bad username or password/i);
    expect(server.output()).not.toContain(`device ${id} moved to`);
  });
});
