import { randomBytes } from 'node:crypto';
import { uploadArtifact } from '../support/artifacts.ts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { databaseBackends } from '../support/databases.ts';
import type { RolloutStatus } from '../support/rollout-status.ts';
import { type DeploymentScript, ProtocolDeviceDouble } from '../support/protocol-device-double.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const fastWave = { soakSeconds: 1, errorThresholdPercent: 0, deviceTimeoutSeconds: 30 };

describe.each(databaseBackends)('rollouts on $name', (backend) => {
  let server: TestServer;
  let doubles: ProtocolDeviceDouble[] = [];
  let releaseCounter = 0;

  beforeAll(async () => {
    server = await startTestServer(backend);
  });
  afterEach(async () => {
    await Promise.all(doubles.map((device) => device.close().catch(() => undefined)));
    doubles = [];
  });
  afterAll(async () => {
    await server?.dispose();
  });

  /** A release with one fresh artifact for rpi-4b. */
  async function release(): Promise<string> {
    const version = `1.0.${++releaseCounter}`;
    const uploaded = await uploadArtifact(server, randomBytes(1024), {
      name: 'app',
      version,
      boards: ['rpi-4b'],
    });
    const name = `release-${version}`;
    await server.api('POST', '/api/v1/releases', { name, artifacts: { 'rpi-4b': uploaded.id } });
    return name;
  }

  async function fleet(tag: string, scripts: DeploymentScript[]): Promise<ProtocolDeviceDouble[]> {
    const created: ProtocolDeviceDouble[] = [];
    for (const [index, script] of scripts.entries()) {
      const { body } = await server.api<{ device: { id: string }; secret: string }>(
        'POST',
        '/api/v1/devices',
        {
          name: `${tag}-${index}`,
          tags: [tag],
        },
      );
      const device = new ProtocolDeviceDouble(body.device.id, body.secret, 'rpi-4b', script);
      await device.connect(server.mqttUrl);
      created.push(device);
    }
    doubles.push(...created);
    // Inventory (the board) must be stored before the engine picks each device's artifact.
    await server.ingest.drain();
    return created.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
  }

  const status = async (id: string) =>
    (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${id}`)).body;
  const until = (id: string, what: string, check: (s: RolloutStatus) => boolean, timeoutMs = 15_000) =>
    eventually(
      what,
      async () => {
        const current = await status(id);
        return check(current) ? current : undefined;
      },
      timeoutMs,
    );

  it('moves a canary wave, then the rest, through download, install and soak to committed', async () => {
    const devices = await fleet('happy', ['succeed', 'succeed', 'succeed']);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['happy'] },
      waves: [
        { name: 'canary', canary: [devices[1]!.deviceId], ...fastWave },
        { name: 'rest', percent: 100, ...fastWave },
      ],
    });
    const done = await until(created.id, 'rollout completed', (s) => s.state === 'completed');
    expect(
      done.waves.map((wave) => [wave.name, wave.state, wave.counts.committed, wave.counts.size]),
    ).toEqual([
      ['canary', 'succeeded', 1, 1],
      ['rest', 'succeeded', 2, 2],
    ]);
    expect(done.devices.every((device) => device.state === 'committed')).toBe(true);
    // The canary was notified before anyone in the second wave.
    const firstDesired = devices.map((device) => device.desiredSeen[0]?.issuedAt ?? Number.POSITIVE_INFINITY);
    expect(firstDesired[1]).toBeLessThan(Math.min(firstDesired[0]!, firstDesired[2]!));
  });

  it('pauses the rollout when the canary wave crosses its error threshold, and never notifies the next wave', async () => {
    const devices = await fleet('canary-fails', ['fail', 'succeed', 'succeed']);
    const canary = devices.find((device) => device.script === 'fail')!;
    const others = devices.filter((device) => device !== canary);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['canary-fails'] },
      waves: [
        { name: 'canary', canary: [canary.deviceId], ...fastWave },
        { name: 'rest', percent: 100, ...fastWave },
      ],
    });
    const paused = await until(created.id, 'rollout paused', (s) => s.state === 'paused');
    expect(paused.reason).toBe('wave canary tripped: 1 of 1 failed (threshold 0%)');
    expect(paused.devices.find((device) => device.deviceId === canary.deviceId)).toMatchObject({
      state: 'failed',
      reason: 'health check failed: app exited with status 1',
    });
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(others.map((device) => device.desiredSeen)).toEqual([[], []]);
  });

  it('fails a device that goes offline during its soak', async () => {
    const devices = await fleet('soak', ['succeed']);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['soak'] },
      waves: [{ percent: 100, ...fastWave, soakSeconds: 30 }],
    });
    await until(created.id, 'device soaking', (s) => s.devices[0]?.state === 'soaking');
    devices[0]!.crash();
    const paused = await until(created.id, 'rollout paused', (s) => s.state === 'paused');
    expect(paused.devices[0]).toMatchObject({ state: 'failed', reason: 'went offline during the soak' });
  });

  it('waits for approval before a gated wave, and sends the previous version back on abort', async () => {
    const devices = await fleet('gated', ['succeed', 'succeed']);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['gated'] },
      rollbackOnAbort: true,
      waves: [
        { name: 'first', percent: 50, ...fastWave },
        { name: 'second', percent: 100, requiresApproval: true, ...fastWave },
      ],
    });
    const waiting = await until(
      created.id,
      'second wave awaits approval',
      (s) => s.waves[1]?.state === 'awaiting-approval',
    );
    expect(waiting.waves[0]?.state).toBe('succeeded');
    expect(devices[1]!.desiredSeen).toEqual([]);
    expect((await server.api('POST', `/api/v1/rollouts/${created.id}/approve`)).status).toBe(200);
    await until(created.id, 'second wave running', (s) => s.devices[1]?.state !== 'queued');
    const aborted = await server.api<RolloutStatus>('POST', `/api/v1/rollouts/${created.id}/abort`);
    expect(aborted.body.state).toBe('aborted');
    await eventually(
      'rollback desired state delivered',
      () => devices[0]!.desiredSeen.at(-1)?.deployment === null,
    );
    expect(devices[0]!.desiredSeen.map((desired) => desired.version)).toEqual([1, 2]);
    expect(aborted.body.devices.every((device) => device.state === 'rolled-back')).toBe(true);
    expect(aborted.body.log.map((entry) => entry.message)).toContain(
      'rollout aborted: aborted by admin (first start)',
    );
  });

  it('refuses an action that does not fit the state, and a viewer', async () => {
    await fleet('actions', ['hang']);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['actions'] },
      waves: [{ percent: 100, ...fastWave }],
    });
    const resumed = await server.api<{ message: string }>('POST', `/api/v1/rollouts/${created.id}/resume`);
    expect(resumed).toMatchObject({
      status: 409,
      body: { message: `cannot resume rollout ${created.id}: it is running` },
    });
    const viewer = await server.api<{ token: string }>('POST', '/api/v1/operator-tokens', {
      name: 'v',
      role: 'viewer',
    });
    expect(
      (await server.api('POST', `/api/v1/rollouts/${created.id}/pause`, undefined, viewer.body.token)).status,
    ).toBe(403);
    expect((await server.api('POST', `/api/v1/rollouts/${created.id}/pause`)).status).toBe(200);
  });

  it('keeps its state across a server restart and serves each device its desired state again', async () => {
    const devices = await fleet('restart', ['hang', 'hang']);
    const { body: created } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: await release(),
      target: { tags: ['restart'] },
      waves: [{ percent: 100, ...fastWave }],
    });
    await eventually('both notified', () => devices.every((device) => device.desiredSeen.length === 1));
    const before = devices.map((device) => device.desiredSeen[0]!);
    await Promise.all(devices.map((device) => device.close()));
    server = await server.restart();
    for (const device of devices) {
      device.desiredSeen.length = 0;
      device.script = 'succeed';
      await device.connect(server.mqttUrl);
    }
    // The retained desired state is back after the restart, same version and deployment: nothing re-planned.
    await eventually('desired republished', () => devices.every((device) => device.desiredSeen.length > 0));
    expect(devices.map((device) => device.desiredSeen[0])).toEqual(before);
    const done = await until(created.id, 'rollout completed after restart', (s) => s.state === 'completed');
    expect(done.devices.map((device) => device.state)).toEqual(['committed', 'committed']);
  });

  it('previews how many devices each wave gets', async () => {
    await fleet('preview', ['hang', 'hang', 'hang', 'hang']);
    const preview = await server.api<{ targetDevices: number; waves: Array<{ devices: string[] }> }>(
      'POST',
      '/api/v1/rollouts/preview',
      {
        release: await release(),
        target: { tags: ['preview'] },
        waves: [{ percent: 25 }, { percent: 100 }],
      },
    );
    expect(preview.body.targetDevices).toBe(4);
    expect(preview.body.waves.map((wave) => wave.devices.length)).toEqual([1, 3]);
  });
});
