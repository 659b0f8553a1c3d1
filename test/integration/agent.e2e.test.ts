import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SystemCollectors } from '../../device-agent/runtime/collectors.ts';
import { DeviceAgent } from '../../device-agent/runtime/device-agent.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { CLI, secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { databaseBackends } from '../support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

describe.each(databaseBackends)('device agent with a server on $name', (backend) => {
  let server: TestServer;
  let provisioningToken: string;

  beforeAll(async () => {
    server = await startTestServer(backend);
    provisioningToken = (
      await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'test' })
    ).body.token;
  });
  afterAll(async () => {
    await server?.dispose();
  });

  /** An agent in this process for a device made through the API, on the embedded broker, quick to beat. */
  const agentOf = (created: { device: { id: string }; secret: string }, dataDir: string) =>
    new DeviceAgent({
      deviceId: created.device.id,
      secret: created.secret,
      mqttUrls: [`mqtt://127.0.0.1:${server.mqttPort}`],
      dataDir,
      heartbeatSeconds: 1,
      keepaliveSeconds: 5,
      collectors: new SystemCollectors(dataDir, '0.1.0', 'test-board'),
      logger: pino({ level: 'silent' }),
      updates: null,
    });

  /** A device made through the API, its agent started in this process, and an MQTT client acting as the server. */
  async function agentInProcess(name: string) {
    const { body: created } = await server.api<{ device: { id: string }; secret: string }>(
      'POST',
      '/api/v1/devices',
      { name },
    );
    const agent = agentOf(created, mkdtempSync(join(tmpdir(), 'boardfleet-agent-')));
    const online = once(agent, 'online');
    agent.start();
    const serverClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${server.mqttPort}`, {
      protocolVersion: 4,
      username: 'boardfleet-server',
      password: readFileSync(join(server.dataDir, 'server-mqtt.secret'), 'utf8').trim(),
    });
    return { deviceId: created.device.id, agent, online, serverClient };
  }

  const device = async (name: string) => {
    const { body } = await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=1000');
    return body.devices.find((d) => d.name === name);
  };

  it('provisions itself, goes online, reports health, and is marked offline by its last-will after kill -9', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-'));
    const agent = startAgentProcess([
      '--server',
      server.httpUrl,
      '--provisioning-token-file',
      secretFile(provisioningToken),
      '--name',
      'killed',
      '--data-dir',
      dataDir,
      '--heartbeat',
      '1',
    ]);
    try {
      const online = await eventually(
        'agent online',
        async () => (await device('killed'))?.online && (await device('killed')),
        20_000,
      );
      expect((statSync(join(dataDir, 'credentials.json')).mode & 0o777).toString(8)).toBe('600');
      const details = await eventually('health stored', async () => {
        const { body } = await server.api<
          DeviceRecord & { latestHealth: { agentRssBytes: number; memory: { totalBytes: number } } | null }
        >('GET', `/api/v1/devices/${online.id}`);
        return body.latestHealth ? body : undefined;
      });
      expect(details.inventory).toMatchObject({ architecture: process.arch, agentVersion: '0.1.0' });
      expect(details.latestHealth?.memory.totalBytes).toBeGreaterThan(0);
      await stopProcess(agent, 'SIGKILL');
      await eventually('offline via last-will', async () => (await device('killed'))?.online === false);
      // The presence history is written beside the device row, not before it: wait for it too.
      const last = await eventually('the offline change in the presence history', async () => {
        const { body } = await server.api<{ changes: Array<{ state: string; reason: string }> }>(
          'GET',
          `/api/v1/devices/${online.id}/presence?from=0`,
        );
        const change = body.changes.at(-1);
        return change?.state === 'offline' ? change : undefined;
      });
      expect(last).toMatchObject({ state: 'offline', reason: 'connection-lost' });
    } finally {
      await stopProcess(agent, 'SIGKILL');
    }
  });

  it('says goodbye on SIGTERM and starts again from its stored credentials', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-'));
    const args = [
      '--server',
      server.httpUrl,
      '--name',
      'restarted',
      '--data-dir',
      dataDir,
      '--heartbeat',
      '1',
    ];
    const first = startAgentProcess([...args, '--provisioning-token-file', secretFile(provisioningToken)]);
    const registered = await eventually(
      'online',
      async () => (await device('restarted'))?.online && (await device('restarted')),
      20_000,
    );
    expect(await stopProcess(first, 'SIGTERM')).toBe(0);
    // The goodbye is stored asynchronously after the process has gone: wait for it.
    const last = await eventually('shutdown presence stored', async () => {
      const { body } = await server.api<{ changes: Array<{ state: string; reason: string }> }>(
        'GET',
        `/api/v1/devices/${registered.id}/presence?from=0`,
      );
      return body.changes.at(-1)?.state === 'offline' ? body.changes.at(-1) : undefined;
    });
    expect(last).toMatchObject({ state: 'offline', reason: 'shutdown' });
    // No token this time: the credentials stored on the first start are enough.
    const second = startAgentProcess(args);
    try {
      await eventually('online again', async () => (await device('restarted'))?.online, 20_000);
      const { body: all } = await server.api<{ devices: DeviceRecord[] }>(
        'GET',
        '/api/v1/devices?limit=1000',
      );
      expect(all.devices.filter((d) => d.name === 'restarted')).toHaveLength(1);
    } finally {
      await stopProcess(second, 'SIGKILL');
    }
  });

  it('delivers every event produced while offline after reconnecting, once each, even across an agent restart', async () => {
    const { body: created } = await server.api<{ device: { id: string }; secret: string }>(
      'POST',
      '/api/v1/devices',
      { name: 'offline-events' },
    );
    const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-agent-'));
    const newAgent = () => agentOf(created, dataDir);
    let agent = newAgent();
    const online = once(agent, 'online');
    agent.start();
    await online;
    agent.recordEvent('before', { n: 0 });
    await eventually('first event stored', async () => {
      const { body } = await server.api<{ events: unknown[] }>(
        'GET',
        `/api/v1/devices/${created.device.id}/events?from=0`,
      );
      return body.events.length > 0;
    });

    // The whole server goes away: the agent keeps producing events into its outbox.
    const mqttPort = server.mqttPort;
    await server.stop();
    await eventually('agent notices', () => !agent.connected);
    for (let n = 1; n <= 5; n++) agent.recordEvent('offline', { n });
    // …and the agent itself restarts while still offline: the outbox is on disk.
    await agent.stop();
    expect(JSON.parse(readFileSync(join(dataDir, 'outbox.json'), 'utf8')).events).toHaveLength(5);

    server = await server.restart();
    expect(server.mqttPort).toBe(mqttPort);
    agent = newAgent();
    agent.start();
    try {
      const events = await eventually(
        'all events stored',
        async () => {
          const { body } = await server.api<{ events: Array<{ type: string; data: { n: number } }> }>(
            'GET',
            `/api/v1/devices/${created.device.id}/events?from=0`,
          );
          const ours = body.events.filter((event) => event.type === 'offline' || event.type === 'before');
          return ours.length >= 6 ? ours : undefined;
        },
        20_000,
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Events made in the same millisecond list in id order, so compare them by their sequence number.
      const sorted = [...events].sort((a, b) => a.data.n - b.data.n);
      expect(sorted.map((event) => `${event.type}:${event.data.n}`)).toEqual([
        'before:0',
        'offline:1',
        'offline:2',
        'offline:3',
        'offline:4',
        'offline:5',
      ]);
      expect(agent.outbox.pending()).toEqual([]);
    } finally {
      await agent.stop();
    }
  });

  it('answers a command once, and drops invalid or stale desired states without stopping', async () => {
    const { deviceId, agent, online, serverClient } = await agentInProcess('commands');
    const desiredSeen: number[] = [];
    agent.on('desired', (desired) => desiredSeen.push(desired.version));
    try {
      await online;
      const command = JSON.stringify({ id: 'cmd-once', issuedAt: Date.now(), type: 'ping' });
      const commands = deviceTopic(deviceId, 'commands');
      const desired = deviceTopic(deviceId, 'desired');
      await serverClient.publishAsync(commands, command, { qos: 1 });
      await serverClient.publishAsync(commands, command, { qos: 1 });
      await serverClient.publishAsync(commands, '{"id": 42}', { qos: 1 });
      await serverClient.publishAsync(
        desired,
        JSON.stringify({ version: 5, issuedAt: Date.now(), deployment: null }),
        { qos: 1, retain: true },
      );
      await serverClient.publishAsync(desired, 'not json', { qos: 1, retain: true });
      await serverClient.publishAsync(
        desired,
        JSON.stringify({ version: 3, issuedAt: Date.now(), deployment: null }),
        { qos: 1, retain: true },
      );
      await serverClient.publishAsync(
        desired,
        JSON.stringify({ version: 6, issuedAt: Date.now(), deployment: null }),
        { qos: 1, retain: true },
      );
      await eventually('version 6 seen', () => desiredSeen.includes(6));
      expect(desiredSeen).toEqual([5, 6]);
      const results = async () => {
        const { body } = await server.api<{ events: Array<{ type: string; data: { commandId?: string } }> }>(
          'GET',
          `/api/v1/devices/${deviceId}/events?from=0`,
        );
        return body.events
          .filter((event) => event.type === 'command-result')
          .map((event) => event.data.commandId);
      };
      await eventually('command answered', async () => (await results()).length > 0);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await results()).toEqual(['cmd-once']);
      expect(agent.connected).toBe(true);
    } finally {
      await serverClient.endAsync();
      await agent.stop();
    }
  });

  it('records its last deployment report again when the server asks with a `report` command', async () => {
    const { deviceId, agent, online, serverClient } = await agentInProcess('asked-again');
    const reports = async () =>
      (
        await server.api<{
          events: Array<{ id: string; type: string; deploymentId?: string; data: unknown }>;
        }>('GET', `/api/v1/devices/${deviceId}/events?from=0`)
      ).body.events.filter((event) => event.type === 'deployment');
    try {
      await online;
      // As the update manager reports: downloading, then installed.
      agent.recordEvent('deployment', { state: 'downloading' }, { deploymentId: 'dep-asked' });
      agent.recordEvent('deployment', { state: 'installed' }, { deploymentId: 'dep-asked' });
      await eventually('both reports stored', async () => (await reports()).length === 2);
      const installed = (await reports()).find(
        (event) => (event.data as { state: string }).state === 'installed',
      );
      const sentAgain = new Promise<{ id: string }>((resolve) => {
        serverClient.on('message', (topic, payload) => {
          const event = JSON.parse(payload.toString()) as { id: string; data?: { state?: string } };
          if (topic === deviceTopic(deviceId, 'events') && event.data?.state === 'installed') resolve(event);
        });
      });
      await serverClient.subscribeAsync(deviceTopic(deviceId, 'events'), { qos: 1 });
      await serverClient.publishAsync(
        deviceTopic(deviceId, 'commands'),
        JSON.stringify({ id: 'cmd-report', issuedAt: Date.now(), type: 'report' }),
        { qos: 1 },
      );
      // The same event (its id) again: a server that lost it stores it, one that has it drops it.
      expect((await sentAgain).id).toBe(installed?.id);
      await eventually('the command answered', async () =>
        (
          await server.api<{ events: Array<{ type: string }> }>(
            'GET',
            `/api/v1/devices/${deviceId}/events?from=0`,
          )
        ).body.events.some((event) => event.type === 'command-result'),
      );
      expect(await reports()).toHaveLength(2);
    } finally {
      await serverClient.endAsync();
      await agent.stop();
    }
  });

  it('runs simulated devices that take a two-wave rollout through real downloads, then go offline cleanly', async () => {
    const artifact = await uploadArtifact(server, randomBytes(64 * 1024), {
      name: 'sim-app',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    await server.api('POST', '/api/v1/releases', {
      name: 'sim-release',
      artifacts: { 'rpi-4b': artifact.id },
    });

    const simulator = spawn(
      process.execPath,
      [
        CLI,
        'simulate',
        '--devices',
        '4',
        '--prefix',
        'simdev',
        '--board',
        'rpi-4b',
        '--tag',
        'sim',
        '--heartbeat',
        '1',
        '--data-dir',
        mkdtempSync(join(tmpdir(), 'boardfleet-sim-')),
      ],
      {
        env: { ...process.env, BOARDFLEET_URL: server.httpUrl, BOARDFLEET_TOKEN: server.adminToken },
        stdio: 'ignore',
      },
    );
    try {
      await eventually(
        '4 simulated devices online',
        async () => {
          const { body } = await server.api<{ devices: DeviceRecord[] }>(
            'GET',
            '/api/v1/devices?tag=sim&online=true',
          );
          return body.devices.length === 4;
        },
        30_000,
      );
      await server.ingest.drain();
      const { body: rollout } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
        release: 'sim-release',
        target: { tags: ['sim'] },
        waves: [
          { percent: 25, soakSeconds: 1 },
          { percent: 100, soakSeconds: 1 },
        ],
      });
      const done = await eventually(
        'rollout completed',
        async () => {
          const { body } = await server.api<{ state: string; devices: Array<{ state: string }> }>(
            'GET',
            `/api/v1/rollouts/${rollout.id}`,
          );
          return body.state === 'completed' ? body : undefined;
        },
        30_000,
      );
      expect(done.devices.map((device) => device.state)).toEqual([
        'committed',
        'committed',
        'committed',
        'committed',
      ]);
      const { body: listed } = await server.api<{ devices: DeviceRecord[] }>(
        'GET',
        '/api/v1/devices?tag=sim',
      );
      expect(listed.devices.map((device) => device.inventory?.slots[0]?.version)).toEqual([
        '1.0.0',
        '1.0.0',
        '1.0.0',
        '1.0.0',
      ]);
    } finally {
      await stopProcess(simulator, 'SIGTERM');
    }
    // Each device said goodbye before the process ended: offline within moments, not after the
    // broker's keepalive timeout (45 s).
    await eventually(
      'every simulated device offline',
      async () => {
        await server.ingest.drain();
        const { body: after } = await server.api<{ devices: DeviceRecord[] }>(
          'GET',
          '/api/v1/devices?tag=sim&online=true',
        );
        return after.devices.length === 0;
      },
      5_000,
    );
  });
});
