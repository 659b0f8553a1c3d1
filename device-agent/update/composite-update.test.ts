import { randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { sendToDevice, uploadArtifact } from '../../test/support/artifacts.ts';
import { sqliteBackend } from '../../test/support/databases.ts';
import { startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { UpdateManager, type UpdateReport } from './update-manager.ts';
import { UpdateState } from './update-state-machine.ts';
import { InstallRefusedError, type UpdateStrategy } from './update-strategy.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

/** Thrown from the save hook to stop the manager right after a state was written: a kill -9 there. */
class SimulatedCrash extends Error {}

/**
 * A fake strategy (the real ones need a Node app or a board on a serial port; their own tests
 * and the composite e2e run them): it "runs" the version it installed, writes what it was asked
 * to do into a journal shared by every strategy of the device, and fails on request. Like the
 * real mcu-serial strategy, `resume` at start-up puts the committed version back when what runs
 * is unhealthy.
 */
class FakeStrategy implements UpdateStrategy {
  runs: string | null = null;
  committed: string | null = null;
  /** Versions whose health check fails, and why. */
  readonly unhealthy = new Map<string, string>();
  /** Versions whose install refuses the artifact before changing anything. */
  readonly refuses = new Set<string>();
  /** Versions whose install hangs until the manager is stopped (to kill it mid-install). */
  readonly hangs = new Set<string>();
  /** Says `hanging` once an install hangs. */
  readonly events = new EventEmitter();

  constructor(
    readonly kind: 'app-bundle' | 'mcu-serial',
    private readonly journal: string[],
  ) {}

  async install(_path: string, manifest: ArtifactManifest, signal: AbortSignal) {
    if (this.refuses.has(manifest.version))
      throw new InstallRefusedError('invalid-arguments', `${manifest.version} is not for this board`);
    if (this.hangs.has(manifest.version)) {
      const aborted = once(signal, 'abort');
      this.events.emit('hanging');
      await aborted;
      throw signal.reason as Error;
    }
    this.journal.push(`install ${manifest.name} ${manifest.version}`);
    this.runs = manifest.version;
    return { needsReboot: false };
  }

  async healthCheck(manifest: ArtifactManifest) {
    const why = this.unhealthy.get(this.runs ?? '');
    this.journal.push(`check ${manifest.name} ${manifest.version}`);
    return why ? { healthy: false as const, reason: why } : { healthy: true as const };
  }

  async commit(manifest: ArtifactManifest): Promise<void> {
    this.journal.push(`commit ${manifest.name} ${manifest.version}`);
    this.committed = manifest.version;
  }

  async rollback(previous: { artifact: string; version: string } | null) {
    this.journal.push(
      `rollback ${this.kind} to ${previous ? `${previous.artifact} ${previous.version}` : 'nothing'}`,
    );
    this.runs = previous?.version ?? null;
    return { needsReboot: false };
  }

  async resume(): Promise<void> {
    if (this.runs && this.unhealthy.has(this.runs)) this.runs = this.committed;
  }

  async stop(): Promise<void> {}
}

describe('update manager with a composite deployment: an app and its attached board firmware (real server, fake strategies)', () => {
  let server: TestServer;
  let auth: { deviceId: string; secret: string };
  let fleetKey: string;
  const work = mkdtempSync(join(tmpdir(), 'boardfleet-composite-updates-'));
  const managers: UpdateManager[] = [];
  const uploaded = new Map<string, ArtifactRecord>();

  async function artifact(name: string, version: string, kind: string): Promise<ArtifactRecord> {
    const key = `${name}@${version}`;
    if (!uploaded.has(key))
      uploaded.set(
        key,
        await uploadArtifact(server, randomBytes(4096), {
          name,
          version,
          boards: [kind === 'mcu-firmware' ? 'uno' : 'rpi-4b'],
          kind,
        }),
      );
    return uploaded.get(key)!;
  }

  /** gateway-app and gateway-firmware at these versions, as one deployment the server sent the device. */
  async function composite(app: string, firmware: string): Promise<Deployment> {
    const deployment = deploymentFromArtifact(
      await artifact('gateway-app', app, 'app-bundle'),
      `dep-${app}-${firmware}`,
      [await artifact('gateway-firmware', firmware, 'mcu-firmware')],
    );
    return sendToDevice(server, auth.deviceId, deployment);
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'gateway',
    });
    auth = { deviceId: body.device.id, secret: body.secret };
    fleetKey = (await server.api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key', undefined, '')).body
      .publicKeyPem;
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((manager) => manager.stop()));
  });
  afterAll(async () => {
    await server?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  /** A gateway: its strategies survive a restart of the manager, as the app and the board do. */
  function gateway(strategies: Array<'app-bundle' | 'mcu-serial'> = ['app-bundle', 'mcu-serial']) {
    const journal: string[] = [];
    return {
      dataDir: mkdtempSync(join(work, 'gateway-')),
      journal,
      app: new FakeStrategy('app-bundle', journal),
      firmware: new FakeStrategy('mcu-serial', journal),
      reports: [] as UpdateReport[],
      crashAt: null as UpdateState | null,
      strategies,
    };
  }
  type Gateway = ReturnType<typeof gateway>;

  function manager(device: Gateway): UpdateManager {
    const created = new UpdateManager({
      dataDir: device.dataDir,
      serverUrl: server.httpUrl,
      auth,
      fleetPublicKeyPem: fleetKey,
      strategies: Object.fromEntries(
        device.strategies.map((kind) => [kind, kind === 'app-bundle' ? device.app : device.firmware]),
      ),
      report: (report) => device.reports.push(report),
      logger: pino({ level: 'silent' }),
      afterSave: (state) => {
        if (state === device.crashAt) {
          device.crashAt = null;
          throw new SimulatedCrash(state);
        }
      },
    });
    managers.push(created);
    return created;
  }

  /** A gateway that committed app 1.0.0 with firmware 1.0.0. */
  async function onV1(): Promise<{ device: Gateway; updates: UpdateManager }> {
    const device = gateway();
    const updates = manager(device);
    await updates.apply(await composite('1.0.0', '1.0.0'));
    expect(updates.current.state).toBe(UpdateState.Committed);
    device.journal.length = 0;
    device.reports.length = 0;
    return { device, updates };
  }

  it('flashes the firmware before installing the app, checks both, commits both and records what each runs', async () => {
    const { device, updates } = await onV1();
    await updates.apply(await composite('2.0.0', '2.1.0'));
    expect(device.journal).toEqual([
      'install gateway-firmware 2.1.0',
      'install gateway-app 2.0.0',
      'check gateway-firmware 2.1.0',
      'check gateway-app 2.0.0',
      'commit gateway-firmware 2.1.0',
      'commit gateway-app 2.0.0',
    ]);
    expect(updates.current).toMatchObject({
      state: UpdateState.Committed,
      running: { artifact: 'gateway-app', version: '2.0.0' },
      runningByStrategy: {
        'app-bundle': { artifact: 'gateway-app', version: '2.0.0' },
        'mcu-serial': { artifact: 'gateway-firmware', version: '2.1.0' },
      },
      installedParts: 2,
    });
    expect(device.reports.at(-1)).toEqual({ deploymentId: 'dep-2.0.0-2.1.0', state: 'installed' });
    // Both downloads were used and are gone once committed; only the kept seeds remain.
    expect(readdirSync(join(device.dataDir, 'downloads'))).toEqual([]);
  });

  it('rolls every part back, the last installed first, each to its own previous version, when the app is unhealthy', async () => {
    const { device, updates } = await onV1();
    device.app.unhealthy.set('2.0.0', 'app exited (status 1)');
    await updates.apply(await composite('2.0.0', '2.1.0'));
    expect(device.journal).toEqual([
      'install gateway-firmware 2.1.0',
      'install gateway-app 2.0.0',
      'check gateway-firmware 2.1.0',
      'check gateway-app 2.0.0',
      'rollback app-bundle to gateway-app 1.0.0',
      'rollback mcu-serial to gateway-firmware 1.0.0',
    ]);
    expect(updates.current).toMatchObject({
      state: UpdateState.RolledBack,
      running: { artifact: 'gateway-app', version: '1.0.0' },
      runningByStrategy: { 'mcu-serial': { artifact: 'gateway-firmware', version: '1.0.0' } },
    });
    expect(device.reports.at(-1)).toEqual({
      deploymentId: 'dep-2.0.0-2.1.0',
      state: 'rolled-back',
      reason: 'gateway-app 2.0.0: app exited (status 1)',
    });
    expect([device.app.runs, device.firmware.runs]).toEqual(['1.0.0', '1.0.0']);
  });

  it('rolls the flashed firmware back when the app install refuses its artifact: not a bare failure', async () => {
    const { device, updates } = await onV1();
    device.app.refuses.add('2.0.0');
    await updates.apply(await composite('2.0.0', '2.1.0'));
    expect(device.journal).toEqual([
      'install gateway-firmware 2.1.0',
      'rollback mcu-serial to gateway-firmware 1.0.0',
    ]);
    expect(updates.current).toMatchObject({ state: UpdateState.RolledBack, installedParts: 1 });
    expect(device.reports.at(-1)).toEqual({
      deploymentId: 'dep-2.0.0-2.1.0',
      state: 'rolled-back',
      reason: '2.0.0 is not for this board',
    });
    expect(device.firmware.runs).toBe('1.0.0');
  });

  it('resumes an install cut short by a restart without flashing the installed firmware again', async () => {
    const { device, updates } = await onV1();
    device.app.hangs.add('2.0.0');
    const hung = once(device.app.events, 'hanging');
    const applied = updates.apply(await composite('2.0.0', '2.1.0'));
    await hung;
    await updates.stop();
    await applied;
    expect(updates.current).toMatchObject({ state: UpdateState.Installing, installedParts: 1 });

    device.app.hangs.clear();
    const restarted = manager(device);
    await restarted.start();
    expect(device.journal.filter((line) => line.startsWith('install'))).toEqual([
      'install gateway-firmware 2.1.0',
      'install gateway-app 2.0.0',
    ]);
    expect(restarted.current).toMatchObject({
      state: UpdateState.Committed,
      runningByStrategy: { 'mcu-serial': { version: '2.1.0' }, 'app-bundle': { version: '2.0.0' } },
    });
  });

  it('rolls both parts back after a restart in the health check finds the firmware unhealthy', async () => {
    const { device, updates } = await onV1();
    device.firmware.unhealthy.set('2.1.0', 'board does not answer Firmata');
    device.crashAt = UpdateState.HealthChecking;
    await updates.apply(await composite('2.0.0', '2.1.0'));
    await updates.stop();
    expect(updates.current.state).toBe(UpdateState.HealthChecking);

    const restarted = manager(device);
    await restarted.start();
    expect(restarted.current).toMatchObject({
      state: UpdateState.RolledBack,
      reason: 'gateway-firmware 2.1.0: board does not answer Firmata',
    });
    expect(device.firmware.committed).toBe('1.0.0');
    expect([device.app.runs, device.firmware.runs]).toEqual(['1.0.0', '1.0.0']);
  });

  it('fails a deployment up front when the agent has no strategy for one of its parts, touching nothing', async () => {
    const device = gateway(['app-bundle']);
    const updates = manager(device);
    await updates.apply(await composite('2.0.0', '2.1.0'));
    expect(device.reports).toEqual([
      { deploymentId: 'dep-2.0.0-2.1.0', state: 'failed', reason: 'this agent has no mcu-serial strategy' },
    ]);
    expect(device.journal).toEqual([]);
    expect(updates.current.state).toBe(UpdateState.Idle);
  });
});
