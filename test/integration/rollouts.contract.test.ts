import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { releaseAppBundle } from '../support/app-bundles.ts';
import { databaseBackends } from '../support/databases.ts';
import { type InProcessAgent, startInProcessFleet } from '../support/in-process-agents.ts';
import { connectDevice } from '../support/mqtt-device.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';
import { decodePayload } from '../../protocol/codec.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { deviceTopic } from '../../protocol/topics.ts';

const BOARD = 'rpi-4b';
const fastWave = { soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 60 };

/**
 * The rollout engine against the real device agent (in this process, through its composition
 * root): every device state and failure reason below comes from the agent's own update code.
 */
describe.each(databaseBackends)('rollouts on $name', (backend) => {
  let server: TestServer;
  let agents: InProcessAgent[] = [];
  let releaseCounter = 0;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });
  afterEach(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    agents = [];
  });
  afterAll(async () => {
    await server?.dispose();
  });

  /** A release of one fresh app bundle for the board; `unhealthy`: its health check fails. */
  async function release(options: { unhealthy?: boolean } = {}) {
    return releaseAppBundle(server, BOARD, { name: 'app', version: `1.0.${++releaseCounter}`, ...options });
  }

  /** Real agents, registered through the API, online with their inventory; sorted by device id. */
  async function fleet(tag: string, count: number, options: { held?: boolean } = {}) {
    const created = await startInProcessFleet(server, {
      tag,
      count,
      board: BOARD,
      beforeStart: (agent) => options.held && agent.holdUpdates(),
    });
    agents.push(...created);
    return created.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  }

  const status = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const until = (id: string, what: string, check: (s: RolloutStatus) => boolean, timeoutMs = 30_000) =>
    eventually(
      what,
      async () => {
        const current = await status(id);
        return check(current) ? current : undefined;
      },
      timeoutMs,
    );

  async function createRollout(body: Record<string, unknown>): Promise<string> {
    const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', body);
    expect(created.status).toBe(201);
    return created.body.id;
  }

  it('moves a canary wave, then the rest, through download, install and soak to committed', async () => {
    const devices = await fleet('happy', 3);
    const { release: name } = await release();
    const id = await createRollout({
      release: name,
      target: { tags: ['happy'] },
      waves: [
        { name: 'canary', canary: [devices[1]!.deviceId], ...fastWave },
        { name: 'rest', percent: 100, ...fastWave },
      ],
    });
    const done = await until(id, 'rollout completed', (s) => s.state === 'completed');
    expect(
      done.waves.map((wave) => [wave.name, wave.state, wave.counts.committed, wave.counts.size]),
    ).toEqual([
      ['canary', 'succeeded', 1, 1],
      ['rest', 'succeeded', 2, 2],
    ]);
    expect(done.devices.every((device) => device.state === 'committed')).toBe(true);
    // The canary was sent its desired state before anyone in the second wave.
    const firstDesired = devices.map((device) => device.desiredSeen[0]?.issuedAt ?? Number.POSITIVE_INFINITY);
    expect(firstDesired[1]).toBeLessThan(Math.min(firstDesired[0]!, firstDesired[2]!));
  });

  it('pauses the rollout when the canary wave crosses its error threshold, and never notifies the next wave', async () => {
    const devices = await fleet('canary-fails', 3);
    const [canary, ...others] = devices as [InProcessAgent, ...InProcessAgent[]];
    const { release: name } = await release({ unhealthy: true });
    const id = await createRollout({
      release: name,
      target: { tags: ['canary-fails'] },
      waves: [
        { name: 'canary', canary: [canary.deviceId], ...fastWave },
        { name: 'rest', percent: 100, ...fastWave },
      ],
    });
    const paused = await until(id, 'rollout paused', (s) => s.state === 'paused');
    expect(paused.reason).toBe('wave canary tripped: 1 of 1 failed (threshold 0%)');
    // The agent ran the bundle's health check, saw it fail and rolled back: its words, not ours.
    expect(paused.devices.find((device) => device.deviceId === canary.deviceId)).toMatchObject({
      state: 'rolled-back',
      reason: 'health check failed after 2 s: health command exited with status 3',
    });
    await server.engine.tick();
    expect(others.map((device) => device.desiredSeen)).toEqual([[], []]);
    expect((await status(id)).devices.filter((d) => d.state === 'queued')).toHaveLength(2);
  });

  it.each([
    {
      tampered: 'the artifact bytes on the server',
      tag: 'tampered-bytes',
      tamper: (artifact: { sha256: string }) => {
        const path = join(
          server.dataDir,
          'artifacts',
          'sha256',
          artifact.sha256.slice(0, 2),
          artifact.sha256,
        );
        writeFileSync(path, randomBytes(readFileSync(path).length));
      },
      reason: /^the downloaded app has sha256 [0-9a-f]{64}, the signed manifest says [0-9a-f]{64}$/,
    },
    {
      tampered: 'the artifact signature',
      tag: 'tampered-signature',
      tamper: async (artifact: { id: string }) => {
        const forged = Buffer.alloc(64, 7).toString('base64');
        await server.db
          .updateTable('artifacts')
          .set({ signature: forged })
          .where('id', '=', artifact.id)
          .execute();
      },
      reason: /^the manifest signature of app 1\.0\.\d+ does not match the fleet key$/,
    },
  ])(
    'fails a device with the agent’s reason when $tampered does not verify',
    async ({ tag, tamper, reason }) => {
      const [device] = await fleet(tag, 1);
      const { release: name, artifact } = await release();
      await tamper(artifact);
      const id = await createRollout({
        release: name,
        target: { deviceIds: [device!.deviceId] },
        waves: [{ percent: 100, ...fastWave }],
      });
      const paused = await until(id, 'rollout paused', (s) => s.state === 'paused');
      expect(paused.devices[0]?.state).toBe('failed');
      expect(paused.devices[0]?.reason).toMatch(reason);
    },
  );

  it('fails a device that goes offline during its soak', async () => {
    const [device] = await fleet('soak', 1);
    const { release: name } = await release();
    const id = await createRollout({
      release: name,
      target: { tags: ['soak'] },
      waves: [{ percent: 100, ...fastWave, soakSeconds: 30 }],
    });
    await until(id, 'device soaking', (s) => s.devices[0]?.state === 'soaking');
    // The network goes: no DISCONNECT, the broker publishes the agent's last will.
    await device!.cutNetwork();
    const paused = await until(id, 'rollout paused', (s) => s.state === 'paused');
    expect(paused.devices[0]).toMatchObject({ state: 'failed', reason: 'went offline during the soak' });
  });

  it('waits for approval before a gated wave; on abort, devices that ran nothing before are not called rolled back', async () => {
    const devices = await fleet('gated', 2, { held: true });
    const { release: name } = await release();
    const id = await createRollout({
      release: name,
      target: { tags: ['gated'] },
      rollbackOnAbort: true,
      waves: [
        { name: 'first', percent: 50, ...fastWave },
        { name: 'second', percent: 100, requiresApproval: true, ...fastWave },
      ],
    });
    devices[0]!.releaseUpdates();
    const waiting = await until(
      id,
      'second wave awaits approval',
      (s) => s.waves[1]?.state === 'awaiting-approval',
    );
    expect(waiting.waves[0]?.state).toBe('succeeded');
    expect(devices[1]!.desiredSeen).toEqual([]);
    expect((await server.api('POST', `/api/v1/rollouts/${id}/approve`)).status).toBe(200);
    // The second device holds its update lock: it downloads and verifies, then waits to activate.
    await until(id, 'second wave running', (s) => s.devices[1]?.state !== 'queued');
    const aborted = await server.api<RolloutStatus>('POST', `/api/v1/rollouts/${id}/abort`);
    expect(aborted.body.state).toBe('aborted');
    // Neither device ran an earlier deployment, so there is nothing to send back: the committed
    // one keeps the release, the one mid-update fails (its agent finishes what it was doing).
    expect(aborted.body.devices.map((device) => device.state)).toEqual(['committed', 'failed']);
    expect(aborted.body.devices[1]?.reason).toMatch(/no earlier deployment to go back to/);
    expect(aborted.body.waves.map((wave) => wave.state)).toEqual(['succeeded', 'aborted']);
    expect(devices[0]!.desiredSeen.map((desired) => desired.version)).toEqual([1]);
    expect(aborted.body.log.map((entry) => entry.message)).toContain(
      '1 device(s) keep this release: they ran no earlier deployment to go back to',
    );
    expect(aborted.body.log.map((entry) => entry.message)).toContain('rollout aborted: aborted by admin');
  });

  it('refuses an action that does not fit the state, and a viewer', async () => {
    await fleet('actions', 1, { held: true });
    const { release: name } = await release();
    const id = await createRollout({
      release: name,
      target: { tags: ['actions'] },
      waves: [{ percent: 100, ...fastWave }],
    });
    const resumed = await server.api<{ message: string }>('POST', `/api/v1/rollouts/${id}/resume`);
    expect(resumed).toMatchObject({
      status: 409,
      body: { message: `cannot resume rollout ${id}: it is running` },
    });
    const viewer = await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
      name: 'v',
      role: 'viewer',
    });
    expect(
      (await server.api('POST', `/api/v1/rollouts/${id}/pause`, undefined, viewer.body.token)).status,
    ).toBe(403);
    expect((await server.api('POST', `/api/v1/rollouts/${id}/pause`)).status).toBe(200);
  });

  it('keeps its state across a server restart and serves each device its desired state again', async () => {
    const devices = await fleet('restart', 2, { held: true });
    const { release: name } = await release();
    const id = await createRollout({
      release: name,
      target: { tags: ['restart'] },
      waves: [{ percent: 100, ...fastWave }],
    });
    await eventually('both notified', () => devices.every((device) => device.desiredSeen.length === 1));
    const before = devices.map((device) => device.desiredSeen[0]!);
    await Promise.all(devices.map((device) => device.stop()));
    server = await server.restart();
    // The retained desired state is back after the restart, same version and deployment: nothing re-planned.
    for (const [index, device] of devices.entries())
      expect(await retainedDesired(device.deviceId, device.secret)).toEqual(before[index]);
    for (const device of devices) {
      device.releaseUpdates();
      await device.start({ serverUrl: server.httpUrl, mqttUrl: server.mqttUrl });
    }
    const done = await until(id, 'rollout completed after restart', (s) => s.state === 'completed');
    expect(done.devices.map((device) => [device.state, device.attempt])).toEqual([
      ['committed', 1],
      ['committed', 1],
    ]);
    // The agents resumed the update they had; no second desired state was sent.
    expect(devices.map((device) => device.desiredSeen.length)).toEqual([1, 1]);
  });

  /** The desired state the broker holds for a device (retained), read with the device's credentials. */
  async function retainedDesired(deviceId: string, secret: string): Promise<DesiredState> {
    const client = await connectDevice(server.mqttUrl, {
      clientId: deviceId,
      username: deviceId,
      password: secret,
    });
    try {
      const received = new Promise<DesiredState>((resolve) =>
        client.on('message', (_topic, payload) => {
          const decoded = decodePayload('desired', payload);
          if (decoded.ok) resolve(decoded.value);
        }),
      );
      await client.subscribeAsync(deviceTopic(deviceId, 'desired'), { qos: 1 });
      return await received;
    } finally {
      await client.endAsync(true);
    }
  }

  it('previews how many devices each wave gets', async () => {
    await fleet('preview', 4);
    const { release: name } = await release();
    const preview = await server.api<{ targetDevices: number; waves: Array<{ devices: string[] }> }>(
      'POST',
      '/api/v1/rollouts/preview',
      { release: name, target: { tags: ['preview'] }, waves: [{ percent: 25 }, { percent: 100 }] },
    );
    expect(preview.body.targetDevices).toBe(4);
    expect(preview.body.waves.map((wave) => wave.devices.length)).toEqual([1, 3]);
  });
});
