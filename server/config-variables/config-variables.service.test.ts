import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configHash } from '../../protocol/device-config-hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import type { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import type { ReleaseService } from '../releases/release.service.ts';
import type { Deployment } from '../rollouts/desired-deployment.ts';
import { RolloutRepository } from '../rollouts/rollout.repository.ts';
import { RolloutExecutor } from '../rollouts/rollout-executor.ts';
import { ConfigVariablesService, configVariablesService } from './config-variables.service.ts';

const deployment = (id: string): Deployment => ({
  id,
  strategy: 'app-bundle',
  artifact: 'app',
  version: '1.0.0',
  sha256: 'a'.repeat(64),
  size: 1,
  url: '/api/v1/artifacts/art-1/content',
  manifest: 'e30=',
  signature: 'c2ln',
  rollbackOrder: null,
});

/**
 * The service with the rollout executor it reissues through, on a real SQLite database; the
 * broker is a double that records what would be published.
 */
describe('configuration variables, with the rollout executor on SQLite', () => {
  let db: Database;
  let drop: () => Promise<void>;
  let config: ConfigVariablesService;
  let executor: RolloutExecutor;
  let rollouts: RolloutRepository;
  let now = 1_000;
  const published: Array<{ deviceId: string; desired: DesiredState }> = [];

  beforeEach(async () => {
    const created = await sqliteBackend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    const devices = new DeviceRepository(db);
    for (const [id, tags] of [
      ['dev-1', ['bench']],
      ['dev-2', ['bench', 'alpha']],
      ['dev-3', []],
    ] as const)
      await devices.create({ id, name: id, board: 'rpi-4b', tags: [...tags], secretHash: 'x', now: 0 });
    rollouts = new RolloutRepository(db);
    const mqttDouble = {
      publishToDevice: async (deviceId: string, _channel: string, desired: DesiredState) => {
        published.push({ deviceId, desired });
      },
    } as unknown as ServerMqttClient;
    const clock = { now: () => now++ };
    config = configVariablesService(db, devices, clock, (ids) => executor.reissueConfig(ids));
    executor = new RolloutExecutor({
      rollouts,
      devices,
      releases: {} as ReleaseService,
      mqtt: mqttDouble,
      clock,
      configs: config,
    });
    published.length = 0;
  });
  afterEach(async () => {
    await db.destroy();
    await drop();
  });

  const set = (
    name: string,
    value: string,
    scope: 'fleet' | 'tag' | 'device' = 'fleet',
    target?: string,
    secret = false,
  ) => config.set(name, { value, scope, secret, ...(target ? { target } : {}) }, 'admin');
  const sentTo = () => published.map(({ deviceId }) => deviceId).sort();

  it('resolves fleet, tag and device values, and sends only the devices whose set changed', async () => {
    await set('LEVEL', 'fleet');
    expect(sentTo()).toEqual(['dev-1', 'dev-2', 'dev-3']);
    published.length = 0;
    await set('LEVEL', 'bench', 'tag', 'bench');
    expect(sentTo()).toEqual(['dev-1', 'dev-2']);
    published.length = 0;
    await set('LEVEL', 'device', 'device', 'dev-1');
    expect(sentTo()).toEqual(['dev-1']);
    published.length = 0;
    // The same value again changes no device's set: nothing is sent.
    await set('LEVEL', 'device', 'device', 'dev-1');
    expect(published).toEqual([]);

    expect(await config.effectiveVariables('dev-1')).toEqual({ LEVEL: 'device' });
    expect(await config.effectiveVariables('dev-2')).toEqual({ LEVEL: 'bench' });
    expect(await config.effectiveVariables('dev-3')).toEqual({ LEVEL: 'fleet' });
    const dev1 = (await rollouts.desired('dev-1')) as DesiredState;
    expect(dev1.version).toBe(3);
    expect(dev1.config).toEqual({ variables: { LEVEL: 'device' }, hash: configHash({ LEVEL: 'device' }) });

    await config.unset('LEVEL', { scope: 'device', target: 'dev-1' });
    expect(await config.effectiveVariables('dev-1')).toEqual({ LEVEL: 'bench' });
    expect((await rollouts.desired('dev-1'))?.version).toBe(4);
  });

  it('never answers a secret value, though the device receives it', async () => {
    const answered = await set('API_TOKEN', 'hunter2', 'fleet', undefined, true);
    expect(answered).toMatchObject({ name: 'API_TOKEN', secret: true });
    expect(answered).not.toHaveProperty('value');
    const listed = await config.list({});
    expect(JSON.stringify(listed)).not.toContain('hunter2');
    const view = await config.deviceConfig('dev-1');
    expect(view.variables).toEqual([{ name: 'API_TOKEN', secret: true, source: 'fleet' }]);
    expect(JSON.stringify(await config.unset('API_TOKEN', {}))).not.toContain('hunter2');
    // Delivered, then removed again.
    expect(published.find(({ desired }) => desired.config)?.desired.config?.variables).toEqual({
      API_TOKEN: 'hunter2',
    });
  });

  it.each([
    [
      'DB-HOST',
      'DB-HOST is not a valid environment variable name: letters, digits and _, not starting with a digit',
    ],
    ['1PORT', '1PORT is not a valid environment variable name'],
    ['', ' is not a valid environment variable name'],
  ])('refuses the name %j with invalid-config-name', async (name, message) => {
    const refused = await set(name, 'x').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BoardfleetError);
    expect((refused as BoardfleetError).code).toBe('invalid-config-name');
    expect((refused as BoardfleetError).message).toContain(message);
  });

  it('refuses an unknown device, a target on the fleet and a missing tag, each with its own message', async () => {
    await expect(set('A', '1', 'device', 'dev-missing')).rejects.toMatchObject({ code: 'not-found' });
    await expect(config.deviceConfig('dev-missing')).rejects.toMatchObject({ code: 'not-found' });
    await expect(set('A', '1', 'fleet', 'dev-1')).rejects.toThrow('the fleet scope takes no target');
    await expect(set('A', '1', 'tag')).rejects.toThrow('the tag scope needs a target');
    await expect(config.unset('A', {})).rejects.toMatchObject({ code: 'not-found' });
  });

  it('keeps both a rollout and a config change that interleave, versions only going up', async () => {
    const send = (deviceId: string, id: string) =>
      executor.apply('ro-1', [{ kind: 'send-desired', deviceId, deployment: deployment(id), at: now }]);
    await send('dev-1', 'dep-1');
    await set('MODE', 'a');
    await send('dev-1', 'dep-2');
    await set('MODE', 'b', 'device', 'dev-1');
    const versions = published.filter(({ deviceId }) => deviceId === 'dev-1').map(({ desired }) => desired);
    expect(
      versions.map((desired) => [desired.version, desired.deployment?.id, desired.config?.variables]),
    ).toEqual([
      [1, 'dep-1', undefined],
      [2, 'dep-1', { MODE: 'a' }],
      [3, 'dep-2', { MODE: 'a' }],
      [4, 'dep-2', { MODE: 'b' }],
    ]);
    expect(await rollouts.desired('dev-1')).toEqual(versions.at(-1));
  });

  it('answers whether a device applied its set from the hash it reported', async () => {
    await set('MODE', 'a');
    const devices = new DeviceRepository(db);
    const device = (await devices.get('dev-1'))!;
    expect(await config.configApplied(device)).toBe(false);
    const reported = { ...device, inventory: { configHash: configHash({ MODE: 'a' }) } } as typeof device;
    expect(await config.configApplied(reported)).toBe(true);
    await set('MODE', 'b', 'tag', 'bench');
    expect(await config.configApplied(reported)).toBe(false);
  });
});
