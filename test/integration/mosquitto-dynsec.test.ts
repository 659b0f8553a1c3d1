import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BoardfleetError } from '../../protocol/errors.ts';
import { deviceTopic, SERVER_HELLO_TOPIC } from '../../protocol/topics.ts';
import { DynsecAdmin } from '../../server/broker/mosquitto/dynsec-admin.ts';
import { deviceAcls, deviceRoleName } from '../../server/broker/mosquitto/dynsec-acl.ts';
import { mayDevicePublish, mayDeviceSubscribe } from '../../server/broker/topic-acl.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { freePort } from '../support/databases.ts';
import { startMosquitto } from '../support/foreign-brokers.ts';
import { startMosquittoFromConfig, type MosquittoBroker } from '../support/mosquitto.ts';
import { connectDevice, connectionRefusal, recordMessages } from '../support/mqtt-device.ts';
import { eventually } from '../support/test-server.ts';

/** The KEY=value lines of an env file, comments left out. */
function parseEnv(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((line) => /^[A-Z_]+=/.test(line))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

const modeOf = (path: string) => statSync(path).mode & 0o777;

/** Whether the broker granted the subscription (MQTT.js rejects a SUBACK 0x80). */
const granted = (client: MqttClient, filter: string) =>
  client.subscribeAsync(filter, { qos: 1 }).then(
    ([grant]) => grant !== undefined && grant.qos !== 128,
    () => false,
  );

describe('Mosquitto from `boardfleet broker-config mosquitto`, managed through dynamic security', () => {
  let workDir: string;
  let brokerDir: string;
  let port: number;
  let env: Record<string, string>;
  let broker: MosquittoBroker;
  let admin: DynsecAdmin;
  const clients: MqttClient[] = [];
  const cli = () => cliRunner({ cwd: workDir });

  /** A device client created through the admin, connected as an agent does (its id as client id). */
  const connectNewDevice = async (deviceId: string, options: Parameters<typeof connectDevice>[1] = {}) => {
    await admin.addDevice(deviceId, `secret-${deviceId}`);
    const client = await connectDevice(broker.url, {
      clientId: deviceId,
      username: deviceId,
      password: `secret-${deviceId}`,
      ...options,
    });
    clients.push(client);
    return client;
  };
  const connectServer = async () => {
    const client = await connectDevice(broker.url, {
      clientId: `boardfleet-server-${clients.length}`,
      username: env.BOARDFLEET_MQTT_SERVER_USERNAME,
      password: env.BOARDFLEET_MQTT_SERVER_PASSWORD,
    });
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'boardfleet-mosquitto-dynsec-'));
    brokerDir = join(workDir, 'broker');
    port = await freePort();
    await cli().ok(
      ...['broker-config', 'mosquitto', '--out', brokerDir, '--port', String(port)],
      ...['--tls-port', String(await freePort()), '--data-dir', join(workDir, 'data')],
    );
    env = parseEnv(readFileSync(join(brokerDir, 'boardfleet.env'), 'utf8'));
    broker = await startMosquittoFromConfig(join(brokerDir, 'mosquitto.conf'));
    admin = await DynsecAdmin.connect({
      url: broker.url,
      username: env.BOARDFLEET_MQTT_ADMIN_USERNAME ?? '',
      password: env.BOARDFLEET_MQTT_ADMIN_PASSWORD ?? '',
    });
  });

  afterAll(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true)));
    await admin?.close();
    await broker?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('writes the configuration, 0600 credentials for the server and the two commands to run next', async () => {
    const otherDir = join(workDir, 'printed');
    const { stdout } = await cli().ok('broker-config', 'mosquitto', '--out', otherDir, '--port', '18830');
    expect(stdout).toContain(`/usr/sbin/mosquitto -c ${otherDir}/mosquitto.conf\n`);
    expect(stdout).toContain(`(set -a && . ${otherDir}/boardfleet.env && npx boardfleet server)\n`);

    const conf = readFileSync(join(brokerDir, 'mosquitto.conf'), 'utf8');
    const plugin = /^plugin (\S+)$/m.exec(conf)?.[1] ?? '';
    expect(plugin).toMatch(/\/mosquitto_dynamic_security\.so$/);
    expect(existsSync(plugin)).toBe(true);
    expect(broker.output()).toContain(`Loading plugin: ${plugin}`);
    for (const line of [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `plugin_opt_config_file ${brokerDir}/dynamic-security.json`,
      `persistence_location ${brokerDir}/`,
      'max_packet_size 131072',
    ]) {
      expect(conf.split('\n')).toContain(line);
    }
    expect(modeOf(brokerDir)).toBe(0o700);
    expect(modeOf(join(brokerDir, 'boardfleet.env'))).toBe(0o600);
    expect(modeOf(join(brokerDir, 'dynamic-security.json'))).toBe(0o600);
    expect(env).toMatchObject({
      MQTT_URL: `mqtt://localhost:${port}`,
      BOARDFLEET_MQTT_ADMIN_USERNAME: 'boardfleet-admin',
      BOARDFLEET_MQTT_SERVER_USERNAME: 'boardfleet-server',
    });
    expect(env.BOARDFLEET_MQTT_ADMIN_PASSWORD).toMatch(/^[\w-]{43}$/);
    expect(env.BOARDFLEET_MQTT_SERVER_PASSWORD).toMatch(/^[\w-]{43}$/);
    expect(env.BOARDFLEET_MQTT_ADMIN_PASSWORD).not.toBe(env.BOARDFLEET_MQTT_SERVER_PASSWORD);
    // The broker's state holds hashes only.
    const state = readFileSync(join(brokerDir, 'dynamic-security.json'), 'utf8');
    expect(state).not.toContain(env.BOARDFLEET_MQTT_ADMIN_PASSWORD);
    expect(state).not.toContain(env.BOARDFLEET_MQTT_SERVER_PASSWORD);
  });

  it('refuses to overwrite an earlier configuration unless --force, which issues new credentials', async () => {
    const dir = join(workDir, 'rewritten');
    const envFile = join(dir, 'boardfleet.env');
    await cli().ok('broker-config', 'mosquitto', '--out', dir, '--port', '18831');
    const before = readFileSync(envFile, 'utf8');
    const refused = await cli().failing('broker-config', 'mosquitto', '--out', dir);
    expect(refused.stderr).toMatch(/already holds mosquitto\.conf.*pass --force/);
    expect(readFileSync(envFile, 'utf8')).toBe(before);

    await cli().ok('broker-config', 'mosquitto', '--out', dir, '--force');
    const [earlier, replaced] = [parseEnv(before), parseEnv(readFileSync(envFile, 'utf8'))];
    expect(replaced.BOARDFLEET_MQTT_ADMIN_PASSWORD).not.toBe(earlier.BOARDFLEET_MQTT_ADMIN_PASSWORD);
    expect(replaced.BOARDFLEET_MQTT_SERVER_PASSWORD).not.toBe(earlier.BOARDFLEET_MQTT_SERVER_PASSWORD);
    expect(modeOf(envFile)).toBe(0o600);
  });

  it("delivers a device's telemetry to one session of the server's shared subscription", async () => {
    const servers = [await connectServer(), await connectServer()];
    const received = servers.map((server) => recordMessages(server));
    for (const server of servers) {
      expect(await granted(server, '$share/boardfleet/boardfleet/v1/devices/+/health')).toBe(true);
    }
    const device = await connectNewDevice('dev-telemetry');
    const sent = Array.from({ length: 20 }, (_, index) => `beat-${index}`);
    for (const payload of sent) {
      await device.publishAsync(deviceTopic('dev-telemetry', 'health'), payload, { qos: 1 });
    }
    const all = () => received.flat().map((message) => message.payload);
    await eventually('every heartbeat at the server', () => all().length >= sent.length, 20_000);
    expect(all().sort()).toEqual([...sent].sort());
    // Shared out between the two sessions rather than copied to each.
    expect(received.every((messages) => messages.length > 0)).toBe(true);
    expect(received.flat().every((message) => message.topic === deviceTopic('dev-telemetry', 'health'))).toBe(
      true,
    );
  });

  const subscriptions = [
    deviceTopic('dev-a', 'desired'),
    deviceTopic('dev-a', 'commands'),
    SERVER_HELLO_TOPIC,
    '#',
    '+/#',
    '$SYS/#',
    'boardfleet/#',
    'boardfleet/v1/server/#',
    'boardfleet/v1/devices/+/desired',
    'boardfleet/v1/devices/dev-a/#',
    'boardfleet/v1/devices/dev-a/+',
    deviceTopic('dev-b', 'desired'),
    deviceTopic('dev-a', 'health'),
  ];

  it('grants a device exactly the subscriptions topic-acl.ts allows, and delivers it what they name', async () => {
    const device = await connectNewDevice('dev-a');
    const messages = recordMessages(device);
    for (const filter of subscriptions) {
      expect({ filter, granted: await granted(device, filter) }).toEqual({
        filter,
        granted: mayDeviceSubscribe('dev-a', filter),
      });
    }
    const server = await connectServer();
    await server.publishAsync(deviceTopic('dev-b', 'desired'), 'for dev-b', { qos: 1 });
    await server.publishAsync(SERVER_HELLO_TOPIC, 'hello', { qos: 1, retain: true });
    await server.publishAsync(deviceTopic('dev-a', 'desired'), 'for dev-a', { qos: 1 });
    await eventually('dev-a receiving its desired state', () =>
      messages.some((message) => message.payload === 'for dev-a'),
    );
    expect(messages.map((message) => message.payload)).toEqual(['hello', 'for dev-a']);
  });

  it('gives a role written by an older server the channels added since (live logs, the shell), once', async () => {
    const deviceId = 'dev-older';
    const role = deviceRoleName(deviceId);
    const older = deviceAcls(deviceId).filter(
      (acl) => !acl.topic.endsWith('/log-watch') && !acl.topic.endsWith('/logs'),
    );
    await admin.createRole(role, older);
    await admin.createClient(deviceId, 'secret-older', { roles: [role], clientId: deviceId });
    const device = await connectDevice(broker.url, {
      clientId: deviceId,
      username: deviceId,
      password: 'secret-older',
    });
    clients.push(device);
    expect(await granted(device, deviceTopic(deviceId, 'log-watch'))).toBe(false);

    expect(await admin.updateDeviceRoles()).toBeGreaterThanOrEqual(1);
    expect(await granted(device, deviceTopic(deviceId, 'log-watch'))).toBe(true);
    const roles = await admin.listRoles();
    const acls = roles.find((candidate) => candidate.rolename === role)?.acls ?? [];
    expect(acls.map((acl) => `${acl.acltype} ${acl.topic}`).sort()).toEqual(
      deviceAcls(deviceId)
        .map((acl) => `${acl.acltype} ${acl.topic}`)
        .sort(),
    );
    expect(await admin.updateDeviceRoles()).toBe(0);
  });

  it('passes on exactly the publishes topic-acl.ts allows a device', async () => {
    await admin.createRole('test-observer', [
      { acltype: 'subscribePattern', topic: '#', allow: true },
      { acltype: 'subscribePattern', topic: '$SYS/#', allow: true },
      { acltype: 'publishClientReceive', topic: '#', allow: true },
      { acltype: 'publishClientReceive', topic: '$SYS/#', allow: true },
    ]);
    await admin.createClient('test-observer', 'observer-secret', { roles: ['test-observer'] });
    const observer = await connectDevice(broker.url, {
      clientId: 'test-observer',
      username: 'test-observer',
      password: 'observer-secret',
    });
    clients.push(observer);
    const seen = recordMessages(observer);
    expect(await granted(observer, '#')).toBe(true);
    expect(await granted(observer, '$SYS/#')).toBe(true);

    const device = await connectNewDevice('dev-p');
    const topics = [
      ...['presence', 'inventory', 'health', 'events', 'desired', 'commands'].map(
        (channel) => `boardfleet/v1/devices/dev-p/${channel}`,
      ),
      SERVER_HELLO_TOPIC,
      deviceTopic('dev-b', 'health'),
      'boardfleet/v1/devices/dev-p/health/x',
      '$SYS/broker/clients',
      'other/topic',
    ];
    for (const topic of topics) await device.publishAsync(topic, `probe ${topic}`, { qos: 1 });
    // Messages from one client arrive in order: once the marker is in, every allowed probe is too.
    await device.publishAsync(deviceTopic('dev-p', 'events'), 'marker', { qos: 1 });
    await eventually('the marker at the observer', () =>
      seen.some((message) => message.payload === 'marker'),
    );
    const passed = seen
      .filter((message) => message.payload.startsWith('probe '))
      .map((message) => message.topic);
    expect(passed).toEqual(topics.filter((topic) => mayDevicePublish('dev-p', topic)));
  });

  it("refuses a wrong password, an unknown device, no credential, and a device's credential under another client id", async () => {
    await admin.addDevice('dev-c', 'secret-c');
    const refusal = (options: Parameters<typeof connectionRefusal>[1]) =>
      connectionRefusal(broker.url, options);
    expect(await refusal({ clientId: 'dev-c', username: 'dev-c', password: 'wrong' })).toMatch(
      /Not authorized/,
    );
    expect(await refusal({ clientId: 'dev-x', username: 'dev-x', password: 'secret-c' })).toMatch(
      /Not authorized/,
    );
    expect(await refusal({ clientId: 'dev-x', username: 'dev-c', password: 'secret-c' })).toMatch(
      /Not authorized/,
    );
    expect(await refusal({ clientId: 'dev-c' })).toMatch(/Not authorized/);
    expect(await refusal({ clientId: 'dev-c', username: 'dev-c', password: 'secret-c' })).toBeNull();
  });

  it('drops a disabled device at once, and refuses its reconnects', async () => {
    const device = await connectNewDevice('dev-d', { reconnectPeriod: 100, reconnectOnConnackError: true });
    let droppedAt = 0;
    let reconnected = 0;
    const refusals: number[] = [];
    device.on('close', () => (droppedAt ||= Date.now()));
    device.on('connect', () => (reconnected += 1));
    device.on('error', () => {
      refusals.push(Date.now());
    });

    await admin.disableClient('dev-d');
    const answeredAt = Date.now();
    await eventually('dev-d dropped', () => droppedAt > 0, 10_000);
    expect(droppedAt - answeredAt).toBeLessThan(1_000);
    await eventually(
      'reconnects refused for 1 s',
      () => refusals.filter((at) => at > droppedAt).length >= 2 && Date.now() - droppedAt >= 1_000,
      20_000,
    );
    expect(reconnected).toBe(0);
    expect(await admin.getClient('dev-d')).toMatchObject({ disabled: true, clientId: 'dev-d' });
    await device.endAsync(true);
  });

  it("changes a device's password: the old one is refused, the new one accepted", async () => {
    await admin.addDevice('dev-e', 'old-secret');
    await admin.setClientPassword('dev-e', 'new-secret');
    expect(
      await connectionRefusal(broker.url, { clientId: 'dev-e', username: 'dev-e', password: 'old-secret' }),
    ).toMatch(/Not authorized/);
    expect(
      await connectionRefusal(broker.url, { clientId: 'dev-e', username: 'dev-e', password: 'new-secret' }),
    ).toBeNull();
  });

  it('keeps device clients across a broker restart, answers a command sent while the admin reconnects, and refuses a removed device', async () => {
    await admin.addDevice('dev-r', 'secret-r');
    await broker.restart();
    const credential = { clientId: 'dev-r', username: 'dev-r', password: 'secret-r' };
    expect(await connectionRefusal(broker.url, credential)).toBeNull();
    // Asked while its connection is still coming back: held until the answers' subscription is.
    expect(await admin.getClient('dev-r')).toMatchObject({ username: 'dev-r', disabled: false });
    await admin.removeDevice('dev-r');
    expect(await admin.getClient('dev-r')).toBeNull();
    expect(await connectionRefusal(broker.url, credential)).toMatch(/Not authorized/);
    await admin.removeDevice('dev-r');
  });

  it('fails with coded errors: a taken name (the first client unharmed), an unknown client, an invalid device id, a wrong admin password', async () => {
    await admin.addDevice('dev-f', 'secret-f');
    await expect(admin.addDevice('dev-f', 'again')).rejects.toMatchObject({ code: 'conflict' });
    // The refused second attempt left the first client as it was.
    expect(await admin.getClient('dev-f')).toMatchObject({ roles: ['boardfleet-device-dev-f'] });
    expect(
      await connectionRefusal(broker.url, { clientId: 'dev-f', username: 'dev-f', password: 'secret-f' }),
    ).toBeNull();
    await expect(admin.disableClient('dev-nobody')).rejects.toMatchObject({ code: 'not-found' });
    for (const deviceId of ['dev+f', 'dev/f', '#', 'boardfleet-server', 'boardfleet-admin']) {
      await expect(admin.addDevice(deviceId, 'x')).rejects.toMatchObject({ code: 'invalid-arguments' });
    }
    await expect(
      DynsecAdmin.connect({ url: broker.url, username: 'boardfleet-admin', password: 'wrong' }),
    ).rejects.toMatchObject({
      code: 'invalid-config',
      message: expect.stringContaining('BOARDFLEET_MQTT_ADMIN'),
    });
  });

  it('times out with `unavailable` on a broker without the dynamic-security plugin', async () => {
    const plain = await startMosquitto(['allow_anonymous true']);
    try {
      const lonely = await DynsecAdmin.connect({
        url: plain.url,
        username: 'anyone',
        password: 'x',
        timeoutMs: 1_500,
      });
      const failure = await lonely.getClient('dev-a').catch((error: unknown) => error);
      await lonely.close();
      expect(failure).toBeInstanceOf(BoardfleetError);
      expect(failure).toMatchObject({
        code: 'unavailable',
        message: expect.stringMatching(/no answer .* within 1500 ms/),
      });
    } finally {
      await plain.stop();
    }
  });
});
