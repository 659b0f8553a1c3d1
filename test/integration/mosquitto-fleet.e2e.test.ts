import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage, PresenceHistory } from '../../protocol/api/devices.ts';
import type { MqttSessionHealth } from '../../protocol/api/fleet.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import { deviceRoleName } from '../../server/broker/mosquitto/dynsec-acl.ts';
import { DynsecAdmin } from '../../server/broker/mosquitto/dynsec-admin.ts';
import { type AgentUnderTest, startSimulator, startTaggedAgents } from '../support/agent-fleet.ts';
import { stopProcess } from '../support/agent-process.ts';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { type BrokerForServer, startMosquittoForServer } from '../support/broker-modes.ts';
import { sqliteBackend } from '../support/databases.ts';
import { connectDevice, recordMessages } from '../support/mqtt-device.ts';
import { rollOutToTag } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const AGENTS = 'mq';
const SIMULATED = 'mq-sim';
/** Real agent processes and a loaded two-core machine: patient, never timing-sensitive. */
const SLOW = 120_000;

/**
 * Issue 14 item 4: the server on Mosquitto (set up by `boardfleet broker-config mosquitto`), with
 * real agent processes and `boardfleet simulate`, behaves as on the embedded broker.
 */
describe('a fleet on Mosquitto: real agents and the simulator', () => {
  let broker: BrokerForServer & { mosquitto: NonNullable<BrokerForServer['mosquitto']> };
  let server: TestServer;
  let admin: DynsecAdmin;
  let simulator: ReturnType<typeof startSimulator> | null = null;
  const simulatorData = mkdtempSync(join(tmpdir(), 'boardfleet-mosquitto-sim-'));
  const agents: AgentUnderTest[] = [];

  const devicesTagged = async (tag: string) =>
    (await server.api<DevicePage>('GET', `/api/v1/devices?tag=${tag}&limit=100`)).body.devices;
  const allOnline = (tag: string, count: number) =>
    eventually(
      `${count} ${tag} devices online with their inventory`,
      async () => {
        const devices = await devicesTagged(tag);
        return devices.length === count && devices.every((d) => d.online && d.inventory?.board === BOARD);
      },
      SLOW,
    );
  const lastPresence = async (deviceId: string) =>
    (await server.api<PresenceHistory>('GET', `/api/v1/devices/${deviceId}/presence?from=0`)).body.changes
      .toSorted((a, b) => a.at - b.at)
      .at(-1);
  /** What Mosquitto keeps retained for a device's desired state, read with the server's credential. */
  const retainedDesired = async (deviceId: string): Promise<DesiredState | null> => {
    const reader = await connectDevice(broker.mosquitto.url, {
      ...broker.serverCredential(server.dataDir),
      clientId: `desired-reader-${Date.now()}`,
    });
    try {
      const messages = recordMessages(reader);
      await reader.subscribeAsync(deviceTopic(deviceId, 'desired'), { qos: 1 });
      const message = await eventually('the retained desired state', () => messages[0], 10_000).catch(
        () => null,
      );
      return message ? (JSON.parse(message.payload) as DesiredState) : null;
    } finally {
      await reader.endAsync();
    }
  };

  beforeAll(async () => {
    broker = await startMosquittoForServer();
    server = await startTestServer(sqliteBackend, broker.env);
    admin = await DynsecAdmin.connect({
      url: broker.mosquitto.url,
      username: broker.env.BOARDFLEET_MQTT_ADMIN_USERNAME ?? '',
      password: broker.env.BOARDFLEET_MQTT_ADMIN_PASSWORD ?? '',
    });
    const { body } = await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', {
      name: 'mosquitto-e2e',
    });
    agents.push(...startTaggedAgents(server, body.token, { tag: AGENTS, board: BOARD, count: 2 }));
    simulator = startSimulator(server, { tag: SIMULATED, board: BOARD, count: 2, dataDir: simulatorData });
    await allOnline(AGENTS, 2);
    await allOnline(SIMULATED, 2);
  }, 180_000);

  afterAll(async () => {
    if (simulator) await stopProcess(simulator.process, 'SIGKILL');
    await Promise.all(agents.map((agent) => agent.dispose()));
    await admin?.close();
    await server?.dispose();
    await broker?.dispose();
    rmSync(simulatorData, { recursive: true, force: true });
  });

  it('gives every provisioned device its own client and role on Mosquitto, and stores their heartbeats', async () => {
    const devices = [...(await devicesTagged(AGENTS)), ...(await devicesTagged(SIMULATED))];
    expect(devices).toHaveLength(4);
    for (const device of devices) {
      expect(await admin.getClient(device.id)).toMatchObject({
        username: device.id,
        clientId: device.id,
        disabled: false,
        roles: [deviceRoleName(device.id)],
      });
    }
    await eventually(
      'heartbeats from every device',
      async () => {
        for (const device of devices) {
          const { body } = await server.api<{ samples: unknown[] }>(
            'GET',
            `/api/v1/devices/${device.id}/health?from=0`,
          );
          if (body.samples.length === 0) return false;
        }
        return true;
      },
      SLOW,
    );
  });

  it('rolls a release out to both agents, which commit it and run it', async () => {
    const { release } = await releaseAppBundle(server, BOARD, { name: 'app', version: '1.0.0' });
    const done = await rollOutToTag(server, release, AGENTS, SLOW);
    expect(done.devices.map((device) => device.state)).toEqual(['committed', 'committed']);
    for (const agent of agents) {
      expect(agent.updateRecord()).toMatchObject({ state: 'committed', running: { version: '1.0.0' } });
      expect(agent.runningApps()).toEqual(['app-1.0.0']);
    }
  }, 150_000);

  it("keeps the agents' desired state retained across a Mosquitto restart, and everyone comes back", async () => {
    await broker.mosquitto.restart();
    const restartedAt = Date.now();
    for (const agent of agents) {
      expect((await retainedDesired(agent.deviceId))?.deployment?.version).toBe('1.0.0');
    }
    const devices = [...(await devicesTagged(AGENTS)), ...(await devicesTagged(SIMULATED))];
    await eventually(
      'a heartbeat from every device through the restarted broker',
      async () => {
        for (const device of devices) {
          const { body } = await server.api<{ samples: unknown[] }>(
            'GET',
            `/api/v1/devices/${device.id}/health?from=${restartedAt}`,
          );
          if (body.samples.length === 0) return false;
        }
        return true;
      },
      SLOW,
    );
    await eventually(
      "the server's MQTT session connected again",
      async () =>
        (await server.api<{ mqtt: MqttSessionHealth }>('GET', '/healthz')).body.mqtt.state === 'connected',
      SLOW,
    );
  }, 150_000);

  it('marks a killed agent offline by its last will, and the stopped simulator offline by its goodbye', async () => {
    const [killed] = agents;
    await killed!.kill();
    // Killed, its socket is closed by the kernel without an MQTT DISCONNECT: Mosquitto publishes the will.
    await eventually(
      `${killed!.name} offline by its last will`,
      async () => (await lastPresence(killed!.deviceId))?.reason === 'connection-lost',
      30_000,
    );
    expect(await lastPresence(killed!.deviceId)).toMatchObject({ state: 'offline' });
    expect((await devicesTagged(AGENTS)).filter((device) => device.online)).toHaveLength(1);

    await stopProcess(simulator!.process, 'SIGTERM');
    const simulated = await devicesTagged(SIMULATED);
    await eventually(
      'the simulated devices offline, said by themselves',
      async () => {
        const last = await Promise.all(simulated.map((device) => lastPresence(device.id)));
        return last.every((change) => change?.state === 'offline' && change.reason !== 'connection-lost');
      },
      30_000,
    );
  }, 90_000);

  it('creates no device while Mosquitto is away, answering 503 with the reason', async () => {
    await broker.mosquitto.stop();
    try {
      const refused = await server.api<{ message: string }>('POST', '/api/v1/devices', {
        name: 'while-away',
      });
      expect(refused.status).toBe(503);
      expect(refused.body.message).toMatch(
        /no answer from the dynamic-security plugin .* is the broker running/,
      );
      // Not even a row left behind: the database is where a half-created device would show.
      const rows = await server.db
        .selectFrom('devices')
        .select('id')
        .where('name', '=', 'while-away')
        .execute();
      expect(rows).toEqual([]);
    } finally {
      await broker.mosquitto.restart();
    }
  }, 60_000);
});
