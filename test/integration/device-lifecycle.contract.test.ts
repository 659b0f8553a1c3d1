import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreatedDevice, Device } from '../../protocol/api/devices.ts';
import type { CreatedProvisioningToken, ProvisionedDevice } from '../../protocol/api/provisioning.ts';
import { deviceTopic } from '../../protocol/topics.ts';
import { SERVER_MQTT_USERNAME } from '../../server/broker/embedded-broker.ts';
import { databaseBackends } from '../support/databases.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const inventory = (hostname: string) => ({
  board: 'rpi-4b',
  os: 'Debian GNU/Linux 12 (bookworm)',
  kernel: '6.1.0',
  architecture: 'arm64',
  agentVersion: '0.1.0',
  hostname,
  slots: [],
  attachedBoards: [],
  at: Date.now(),
});

describe.each(databaseBackends)('device names, renaming and deletion on $name', (backend) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });

  afterAll(async () => {
    await server?.dispose();
  });

  const create = (body: Record<string, unknown>) =>
    server.api<CreatedDevice & { message: string }>('POST', '/api/v1/devices', body);
  const provision = async (token: string, name: string) => {
    const response = await fetch(`${server.httpUrl}/api/v1/provision`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    expect(response.status).toBe(201);
    return (await response.json()) as ProvisionedDevice;
  };
  const nameOf = async (id: string) => (await server.api<Device>('GET', `/api/v1/devices/${id}`)).body.name;

  it('refuses a name another device has (case aside) unless allowDuplicate, and frees a revoked one', async () => {
    expect((await create({ name: 'kitchen-pi' })).status).toBe(201);
    const again = await create({ name: 'Kitchen-Pi' });
    expect(again.status).toBe(409);
    expect(again.body.message).toContain('a device named Kitchen-Pi already exists');
    expect(again.body.message).toContain('allowDuplicate');
    const allowed = await create({ name: 'kitchen-pi', allowDuplicate: true });
    expect(allowed.status).toBe(201);

    const old = await create({ name: 'retired-pi' });
    await server.api('POST', `/api/v1/devices/${old.body.device.id}/revoke`);
    expect((await create({ name: 'retired-pi' })).status).toBe(201);
  });

  it('gives provisioned devices asking for a taken name the next free suffix', async () => {
    const { body: token } = await server.api<CreatedProvisioningToken>(
      'POST',
      '/api/v1/provisioning-tokens',
      {
        name: 'image',
      },
    );
    // An operator's "raspberrypi-2" is taken too: the image's third device skips it.
    expect((await create({ name: 'raspberrypi-2' })).status).toBe(201);
    const names = [];
    for (let boot = 0; boot < 3; boot++)
      names.push(await nameOf((await provision(token.token, 'raspberrypi')).deviceId));
    expect(names).toEqual(['raspberrypi', 'raspberrypi-3', 'raspberrypi-4']);
    // `_` in a name is a literal, not LIKE's any-character.
    expect((await create({ name: 'lab_1' })).status).toBe(201);
    expect(await nameOf((await provision(token.token, 'lab_1')).deviceId)).toBe('lab_1-2');
  });

  it('renames a device, refusing a taken name unless allowDuplicate', async () => {
    const { body: a } = await create({ name: 'attic-pi', tags: ['lab'] });
    await create({ name: 'cellar-pi' });
    const renamed = await server.api<Device>('PATCH', `/api/v1/devices/${a.device.id}`, { name: 'loft-pi' });
    expect(renamed).toMatchObject({ status: 200, body: { name: 'loft-pi', tags: ['lab'] } });
    expect((await server.api('PATCH', `/api/v1/devices/${a.device.id}`, { name: 'Loft-Pi' })).status).toBe(
      200,
    );
    const taken = await server.api<{ message: string }>('PATCH', `/api/v1/devices/${a.device.id}`, {
      name: 'cellar-pi',
    });
    expect(taken.status).toBe(409);
    const forced = await server.api<Device>('PATCH', `/api/v1/devices/${a.device.id}`, {
      name: 'cellar-pi',
      allowDuplicate: true,
    });
    expect(forced.body.name).toBe('cellar-pi');
    expect((await server.api('PATCH', `/api/v1/devices/${a.device.id}`, {})).status).toBe(400);
  });

  describe('deletion', () => {
    let device: CreatedDevice;
    let client: MqttClient;

    beforeAll(async () => {
      device = (await create({ name: 'doomed', tags: ['lab'] })).body;
      const id = device.device.id;
      client = await connectDevice(server.mqttUrl, {
        clientId: id,
        username: id,
        password: device.secret,
        clean: false,
      });
      await client.subscribeAsync(deviceTopic(id, 'desired'), { qos: 1 });
      await client.publishAsync(
        deviceTopic(id, 'presence'),
        JSON.stringify({ state: 'online', reason: 'started', at: Date.now() }),
        { qos: 1, retain: true },
      );
      await client.publishAsync(deviceTopic(id, 'inventory'), JSON.stringify(inventory('doomed')), {
        qos: 1,
        retain: true,
      });
      await eventually('online with its inventory', async () => {
        const { body } = await server.api<Device>('GET', `/api/v1/devices/${id}`);
        return body.online && body.inventory !== null;
      });
    });

    afterAll(async () => {
      await client?.endAsync(true);
    });

    /** The retained messages the broker still keeps on the device's topics, as the server's session sees them. */
    async function retainedTopics(id: string): Promise<string[]> {
      const secret = readFileSync(join(server.dataDir, 'server-mqtt.secret'), 'utf8').trim();
      const observer = await connectDevice(server.mqttUrl, {
        clientId: `${SERVER_MQTT_USERNAME}-observer-${Date.now()}`,
        username: SERVER_MQTT_USERNAME,
        password: secret,
        clean: true,
      });
      // A retained marker subscribed after the device's topics arrives after all of theirs.
      const marker = `boardfleet/v1/observer/${Date.now()}`;
      await observer.publishAsync(marker, 'end', { qos: 1, retain: true });
      const topics: string[] = [];
      observer.on('message', (topic, _payload, packet) => {
        if (packet.retain) topics.push(topic);
      });
      await observer.subscribeAsync([`boardfleet/v1/devices/${id}/#`, marker], { qos: 1 });
      await eventually('the retained marker', () => topics.includes(marker));
      await observer.publishAsync(marker, '', { qos: 1, retain: true });
      await observer.endAsync();
      return topics.filter((topic) => topic !== marker);
    }

    it('refuses to delete a device that is not revoked', async () => {
      const refused = await server.api<{ message: string }>('DELETE', `/api/v1/devices/${device.device.id}`);
      expect(refused.status).toBe(409);
      expect(refused.body.message).toContain('revoke it first');
      expect((await server.api('GET', `/api/v1/devices/${device.device.id}`)).status).toBe(200);
    });

    it('deletes a revoked device with its history, its retained messages and its session', async () => {
      const id = device.device.id;
      expect(await retainedTopics(id)).toContain(deviceTopic(id, 'inventory'));
      expect((await server.api('POST', `/api/v1/devices/${id}/revoke`)).status).toBe(200);
      const deleted = await server.api<Device>('DELETE', `/api/v1/devices/${id}`);
      expect(deleted).toMatchObject({ status: 200, body: { id, name: 'doomed' } });
      expect((await server.api('GET', `/api/v1/devices/${id}`)).status).toBe(404);
      for (const table of ['device_tags', 'presence_history', 'health_samples', 'device_events'] as const) {
        const rows = await server.db.selectFrom(table).selectAll().where('device_id', '=', id).execute();
        expect(rows, table).toEqual([]);
      }
      expect(await retainedTopics(id)).toEqual([]);
      expect((await server.api('DELETE', `/api/v1/devices/${id}`)).status).toBe(404);
    });
  });
});
