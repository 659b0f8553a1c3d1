import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AgentCredentials } from '../../device-agent/lib/credentials.ts';
import type { DeviceRecord } from '../../server/devices/device.repository.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { sqliteBackend } from '../support/databases.ts';
import {
  type ForeignBroker,
  startAedesRefusingSubscriptions,
  startMosquitto,
} from '../support/foreign-brokers.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

/**
 * Issue 15, item 2: without `--mqtt` the agent asks the server where its broker is, and it tells a
 * broker that is not Boardfleet's (a system Mosquitto where it looked, say) by the missing server
 * hello, a refused subscription or refused credentials, instead of saying "connected".
 */

interface LogLine {
  level?: number;
  msg?: string;
  mqttUrl?: string;
}
const PINO_ERROR = 50;

/** The agent's pino lines (JSON: its stdout is a pipe). */
const logLines = (output: string): LogLine[] =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogLine);

describe('the agent finds the broker from the server (issue 15, item 2)', () => {
  let server: TestServer;
  const agents: Array<ReturnType<typeof startAgentProcess>> = [];
  const brokers: ForeignBroker[] = [];
  const dirs: string[] = [];

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
  });
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((agent) => stopProcess(agent, 'SIGKILL')));
    await Promise.all(brokers.splice(0).map((broker) => broker.stop()));
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'boardfleet-broker-discovery-'));
    dirs.push(dir);
    return dir;
  };
  const agent = (dataDir: string, args: string[]) => {
    const child = startAgentProcess(['--server', server.httpUrl, '--data-dir', dataDir, ...args]);
    agents.push(child);
    return child;
  };
  const createDevice = async (name: string) =>
    (await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', { name })).body;
  const deviceNamed = async (name: string) =>
    (await server.api<{ devices: DeviceRecord[] }>('GET', '/api/v1/devices?limit=1000')).body.devices.find(
      (device) => device.name === name,
    );
  const storedCredentials = (dataDir: string) =>
    JSON.parse(readFileSync(join(dataDir, 'credentials.json'), 'utf8')) as AgentCredentials;
  const serverBroker = () => `mqtt://127.0.0.1:${server.mqttPort}`;

  it('connects to the broker the server names, on a port other than 1883, with no --mqtt', async () => {
    expect(server.mqttPort).not.toBe(1883);
    const { body } = await server.api<{ mqttUrl: string }>('GET', '/api/v1/mqtt-endpoint', undefined, '');
    expect(body).toEqual({ mqttUrl: serverBroker() });

    const device = await createDevice('no-mqtt-flag');
    const dataDir = tempDir();
    const child = agent(dataDir, [
      '--device-id',
      device.device.id,
      '--secret-file',
      secretFile(device.secret),
    ]);

    await eventually('the device online', async () => (await deviceNamed('no-mqtt-flag'))?.online, 30_000);
    expect(storedCredentials(dataDir).mqttUrl).toBe(serverBroker());
    expect(logLines(child.output())).toContainEqual(
      expect.objectContaining({ msg: 'connected', mqttUrl: serverBroker() }),
    );
  });

  it('learns the broker again over the URL an older agent guessed, which led to a system Mosquitto', async () => {
    const mosquitto = await startMosquitto(['allow_anonymous true']);
    brokers.push(mosquitto);
    const device = await createDevice('guessed-before');
    const dataDir = tempDir();
    const { body: fleetKey } = await server.api<{ publicKeyPem: string }>(
      'GET',
      '/api/v1/fleet-key',
      undefined,
      '',
    );
    // What an agent before this change saved: the server's host and 1883, here the Mosquitto.
    writeFileSync(
      join(dataDir, 'credentials.json'),
      JSON.stringify({
        schemaVersion: 1,
        deviceId: device.device.id,
        secret: device.secret,
        mqttUrl: mosquitto.url,
        fleetPublicKeyPem: fleetKey.publicKeyPem,
        provisioningTokenSha256: null,
      }),
      { mode: 0o600 },
    );

    const child = agent(dataDir, []);

    await eventually('the device online', async () => (await deviceNamed('guessed-before'))?.online, 30_000);
    expect(storedCredentials(dataDir).mqttUrl).toBe(serverBroker());
    expect(child.output()).toContain(`the server's broker is at ${serverBroker()} (was ${mosquitto.url})`);
  });

  it('tries the broker the server named last when the server cannot be asked', async () => {
    const device = await createDevice('server-away');
    const dataDir = tempDir();
    const first = agent(dataDir, [
      '--device-id',
      device.device.id,
      '--secret-file',
      secretFile(device.secret),
    ]);
    await eventually('the device online', async () => (await deviceNamed('server-away'))?.online, 30_000);
    await stopProcess(first, 'SIGTERM');

    // Nothing listens on port 1: the server's HTTP side is away, its broker is not.
    const child = startAgentProcess(['--server', 'http://127.0.0.1:1', '--data-dir', dataDir]);
    agents.push(child);

    await eventually(
      'connected to the broker named last',
      () =>
        logLines(child.output()).some((line) => line.msg === 'connected' && line.mqttUrl === serverBroker()),
      30_000,
    );
    expect(child.output()).toContain(`trying ${serverBroker()}, where it was last`);
  });

  it.each([
    {
      broker: 'a Mosquitto letting anyone in',
      start: () => startMosquitto(['allow_anonymous true']),
      problem: (url: string) => `${url} is not Boardfleet's broker: no server hello within 2 s`,
    },
    {
      broker: 'a Mosquitto refusing strangers',
      start: () => startMosquitto(['allow_anonymous false']),
      problem: (url: string) =>
        `Connection refused: Not authorized by ${url}: the device's secret is wrong or revoked, or this is not Boardfleet's broker`,
    },
    {
      broker: 'an Aedes refusing every subscription',
      start: () => startAedesRefusingSubscriptions(),
      problem: (url: string) =>
        `${url} is not Boardfleet's broker: it refused the subscription to boardfleet/v1/server/hello`,
    },
  ])(
    'says $broker is not Boardfleet’s, never "connected", and keeps trying',
    async ({ start, problem }) => {
      const broker = await start();
      brokers.push(broker);
      const device = await createDevice(`foreign-${brokers.length}-${Date.now()}`);
      const dataDir = tempDir();
      const config = join(dataDir, 'agent.json');
      writeFileSync(config, JSON.stringify({ helloTimeout: 2 }));
      const child = agent(dataDir, [
        ...['--device-id', device.device.id, '--secret-file', secretFile(device.secret)],
        ...['--mqtt', broker.url, '--config', config],
      ]);

      const errorLines = () =>
        logLines(child.output()).filter(
          (line) => line.level === PINO_ERROR && line.msg?.includes(problem(broker.url)),
        );
      // Two attempts: the agent retries (the server may be starting) rather than giving up.
      await eventually(
        'two attempts refused with the reason',
        () => {
          if (child.exitCode !== null) throw new Error(`agent exited:\n${child.output()}`);
          return errorLines().length >= 2;
        },
        45_000,
      );
      expect(errorLines()[0]?.msg).toMatch(/^MQTT connection attempt 1 failed: .*pass --mqtt with the URL/);
      expect(logLines(child.output()).map((line) => line.msg)).not.toContain('connected');
      expect((await server.api<DeviceRecord>('GET', `/api/v1/devices/${device.device.id}`)).body.online).toBe(
        false,
      );
    },
    60_000,
  );
});
