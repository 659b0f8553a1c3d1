import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredState } from '../../protocol/schemas.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { sendToDevice, uploadArtifact } from '../../test/support/artifacts.ts';
import { freePort, sqliteBackend } from '../../test/support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { activationGate } from './activation-gate.ts';
import { AppBundleStrategy } from './app-bundle.strategy.ts';
import { SimulatedPi, writeTestPayload } from '../../test/support/simulated-pi.ts';
import {
  type UpdateManager as Manager,
  UpdateManager,
  type UpdateManagerOptions,
  type UpdateReport,
} from './update-manager.ts';
import { UpdateState } from './update-state-machine.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

/** Thrown from the save hook to stop the manager right after a state was written: a kill -9 there. */
class SimulatedCrash extends Error {}

describe('update manager with app bundles (real server, real processes)', () => {
  let server: TestServer;
  let auth: { deviceId: string; secret: string };
  const sent = (deployment: Deployment) => sendToDevice(server, auth.deviceId, deployment);
  let fleetKey: string;
  let port: number;
  const work = mkdtempSync(join(tmpdir(), 'boardfleet-updates-'));
  const running: Manager[] = [];
  let bundles: Record<'v1' | 'v2' | 'broken', Deployment>;

  /** A bundle whose app answers its version over HTTP, or (broken) exits at once. */
  async function bundle(version: string, broken = false): Promise<Deployment> {
    const dir = join(work, `src-${version}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'app.js'),
      broken
        ? 'process.exit(1);\n'
        : `require('node:http').createServer((q, s) => s.end('${version}')).listen(Number(process.env.PORT), '127.0.0.1');\n`,
    );
    writeFileSync(
      join(dir, 'boardfleet-app.json'),
      JSON.stringify({
        start: [process.execPath, 'app.js'],
        env: { PORT: String(port) },
        // Generous: on a loaded CI machine a Node app can take seconds to listen.
        healthCheck: { http: `http://127.0.0.1:${port}/`, timeoutSeconds: 20 },
      }),
    );
    const file = join(work, `app-${version}.tar.gz`);
    await tar.c({ gzip: true, file, cwd: dir, portable: true }, ['app.js', 'boardfleet-app.json']);
    const artifact = await uploadArtifact(server, readFileSync(file), {
      name: 'demo',
      version,
      boards: ['rpi-4b'],
    });
    return deploymentFromArtifact(artifact, `dep-${version}`);
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    port = await freePort();
    const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
      name: 'pi',
    });
    auth = { deviceId: body.device.id, secret: body.secret };
    fleetKey = (await server.api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key', undefined, '')).body
      .publicKeyPem;
    bundles = { v1: await bundle('1.0.0'), v2: await bundle('2.0.0'), broken: await bundle('3.0.0', true) };
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((manager) => manager.stop()));
  });
  afterAll(async () => {
    await server?.dispose();
  });

  function manager(
    dataDir: string,
    reports: UpdateReport[],
    crash?: { at: UpdateState; armed: boolean },
    extra: Pick<UpdateManagerOptions, 'activationGate' | 'activationRecheckMs'> = {},
  ) {
    let crashed = false;
    const created = new UpdateManager({
      ...extra,
      dataDir,
      serverUrl: server.httpUrl,
      auth,
      fleetPublicKeyPem: fleetKey,
      strategies: { 'app-bundle': new AppBundleStrategy(join(dataDir, 'app')) },
      report: (report) => reports.push(report),
      logger: pino({ level: 'silent' }),
      afterSave: (state) => {
        if (crash?.armed && state === crash.at && !crashed) {
          crashed = true;
          throw new SimulatedCrash(state);
        }
      },
    });
    running.push(created);
    return created;
  }

  const answer = () =>
    fetch(`http://127.0.0.1:${port}/`).then(
      (response) => response.text(),
      () => null,
    );

  it('installs, health-checks and commits a good bundle, and reports each step', async () => {
    const reports: UpdateReport[] = [];
    const dataDir = mkdtempSync(join(work, 'good-'));
    const updates = manager(dataDir, reports);
    await updates.apply(await sent(bundles.v1));
    expect(updates.current).toMatchObject({ state: UpdateState.Committed, running: { version: '1.0.0' } });
    expect(await answer()).toBe('1.0.0');
    expect([...new Set(reports.map((report) => report.state))]).toEqual([
      'downloading',
      'installing',
      'installed',
    ]);
    // The same deployment again changes nothing and re-reports its outcome.
    reports.length = 0;
    await updates.apply(await sent(bundles.v1));
    expect(reports).toEqual([{ deploymentId: 'dep-1.0.0', state: 'installed' }]);
  });

  it('downloads and verifies while the update lock is held, and activates only once it is released', async () => {
    const reports: UpdateReport[] = [];
    const dataDir = mkdtempSync(join(work, 'locked-'));
    const lockFile = join(dataDir, 'update.lock');
    writeFileSync(lockFile, String(process.pid));
    const updates = manager(dataDir, reports, undefined, {
      activationGate: activationGate({ lockFile }),
      activationRecheckMs: 50,
    });
    const applied = updates.apply(await sent(bundles.v1));
    await eventually('activation deferred', async () =>
      reports.some((report) => report.reason?.startsWith('deferred: the update lock')),
    );
    expect(updates.current.state).toBe(UpdateState.Installing);
    expect(await answer()).toBeNull();
    rmSync(lockFile);
    await applied;
    expect(updates.current).toMatchObject({ state: UpdateState.Committed, running: { version: '1.0.0' } });
    expect(await answer()).toBe('1.0.0');
    expect(reports.filter((report) => report.reason?.startsWith('deferred'))).toHaveLength(1);
  });

  it('rolls a failing bundle back to the version that ran before', async () => {
    const reports: UpdateReport[] = [];
    const updates = manager(mkdtempSync(join(work, 'bad-')), reports);
    await updates.apply(await sent(bundles.v1));
    await updates.apply(await sent(bundles.broken));
    expect(updates.current).toMatchObject({ state: UpdateState.RolledBack, running: { version: '1.0.0' } });
    expect(updates.current.reason).toMatch(/^health check failed after 20 s: app exited \(status 1\)$/);
    await eventually('old version answering again', async () => (await answer()) === '1.0.0');
    expect(reports.at(-1)).toMatchObject({ deploymentId: 'dep-3.0.0', state: 'rolled-back' });
  });

  it.each([
    { crashAt: UpdateState.Downloading, bundle: 'v2', ends: UpdateState.Committed, runs: '2.0.0' },
    { crashAt: UpdateState.Verifying, bundle: 'v2', ends: UpdateState.Committed, runs: '2.0.0' },
    { crashAt: UpdateState.Installing, bundle: 'v2', ends: UpdateState.Committed, runs: '2.0.0' },
    { crashAt: UpdateState.HealthChecking, bundle: 'v2', ends: UpdateState.Committed, runs: '2.0.0' },
    { crashAt: UpdateState.Installing, bundle: 'broken', ends: UpdateState.RolledBack, runs: '1.0.0' },
    { crashAt: UpdateState.HealthChecking, bundle: 'broken', ends: UpdateState.RolledBack, runs: '1.0.0' },
    { crashAt: UpdateState.RollingBack, bundle: 'broken', ends: UpdateState.RolledBack, runs: '1.0.0' },
  ] as const)(
    'killed in $crashAt with $bundle, it resumes and ends $ends running $runs',
    async ({ crashAt, bundle: name, ends, runs }) => {
      const dataDir = mkdtempSync(join(work, `crash-${crashAt}-`));
      const crash = { at: crashAt, armed: false };
      const first = manager(dataDir, [], crash);
      await first.apply(await sent(bundles.v1));
      crash.armed = true;
      await first.apply(await sent(bundles[name]));
      // The process "dies" here: its app children go with it (as under systemd), nothing else is cleaned up.
      await first.stop();
      expect(first.current.state).toBe(crashAt);

      const reports: UpdateReport[] = [];
      const second = manager(dataDir, reports);
      await second.start();
      expect(second.current).toMatchObject({ state: ends, running: { version: runs } });
      await eventually(`version ${runs} answering`, async () => (await answer()) === runs);
      expect(reports.at(-1)?.state).toBe(ends === UpdateState.Committed ? 'installed' : 'rolled-back');
    },
  );
});

/**
 * What differs between the two ways of trying a slot once: the reboot that tries it, the file
 * that arms it, and what a slot that never comes up costs (with the initramfs trial the
 * firmware boots it twice, the initramfs restarting the second time into the old slot).
 */
const TRIAL_METHODS = [
  {
    trial: 'firmware-tryboot',
    tryReboot: 'tryboot',
    armedFile: 'tryboot.txt',
    failedTrialBoots: ['a', 'b', 'a'],
    failedTrialReason: 'slot b did not come up after the tryboot reboot; slot a runs again',
    initramfsSays: { committed: [], failed: [] },
  },
  {
    trial: 'initramfs-trial',
    tryReboot: 'normal',
    armedFile: 'trial.txt',
    failedTrialBoots: ['a', 'b', 'b', 'a'],
    failedTrialReason: 'slot b did not come up in its trial boot; slot a runs again',
    initramfsSays: {
      committed: ['boardfleet: trial of slot b, first boot'],
      failed: [
        'boardfleet: trial of slot b, first boot',
        'boardfleet: trial of slot b failed, back to slot a',
      ],
    },
  },
] as const;

describe.each(TRIAL_METHODS)(
  'update manager with linux-ab A/B slots, $trial (real server, simulated Pi, reboots that restart the manager)',
  ({ trial, tryReboot, armedFile, failedTrialBoots, failedTrialReason, initramfsSays }) => {
    let server: TestServer;
    let auth: { deviceId: string; secret: string };
    const sent = (deployment: Deployment) => sendToDevice(server, auth.deviceId, deployment);
    let fleetKey: string;
    const work = mkdtempSync(join(tmpdir(), 'boardfleet-linux-ab-updates-'));
    let images: Record<'v2' | 'v3' | 'v4' | 'neverComesUp' | 'neverConnects' | 'corrupt', Deployment>;
    const NEVER_COMES_UP = '5.0.0';
    const NEVER_CONNECTS = '6.0.0';

    async function image(version: string, corrupt = false): Promise<Deployment> {
      const payload = await writeTestPayload(work, {
        version,
        tamper: corrupt
          ? ({ rootfs }) => {
              rootfs[0] = (rootfs[0] ?? 0) ^ 0xff;
            }
          : undefined,
      });
      const artifact = await uploadArtifact(server, readFileSync(payload.file), {
        name: 'pi-minimal',
        version,
        boards: ['rpi-4b'],
        kind: 'linux-image',
      });
      return deploymentFromArtifact(artifact, `dep-${version}`);
    }

    beforeAll(async () => {
      server = await startTestServer(sqliteBackend);
      const { body } = await server.api<{ device: { id: string }; secret: string }>(
        'POST',
        '/api/v1/devices',
        {
          name: 'pi',
        },
      );
      auth = { deviceId: body.device.id, secret: body.secret };
      fleetKey = (await server.api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key', undefined, '')).body
        .publicKeyPem;
      images = {
        v2: await image('2.0.0'),
        v3: await image('3.0.0'),
        v4: await image('4.0.0'),
        neverComesUp: await image(NEVER_COMES_UP),
        neverConnects: await image(NEVER_CONNECTS),
        corrupt: await image('7.0.0', true),
      };
    });
    afterAll(async () => {
      await server?.dispose();
    });

    type Crash = { at: UpdateState; how: 'agent' | 'power'; times: number };

    /**
     * The agent on a simulated Pi. A reboot the strategy asks for is performed by the Pi's
     * "firmware" and a new manager starts on the same data dir, as the agent starts after a real
     * reboot; a simulated crash restarts the manager in the same boot (`agent`, a kill -9) or
     * after a power cycle (`power`).
     */
    class PiAgent {
      readonly pi = new SimulatedPi(mkdtempSync(join(work, 'pi-')), '1.0.0', trial);
      readonly reports: UpdateReport[] = [];
      manager: UpdateManager;
      private crashed = false;

      constructor(private readonly crash: Crash | null = null) {
        this.pi.neverComesUp.add(NEVER_COMES_UP);
        this.pi.neverConnects.add(NEVER_CONNECTS);
        this.manager = this.create();
      }

      private create(): UpdateManager {
        return new UpdateManager({
          dataDir: this.pi.dataDir,
          serverUrl: server.httpUrl,
          auth,
          fleetPublicKeyPem: fleetKey,
          strategies: { 'linux-ab': this.pi.strategy() },
          report: (report) => this.reports.push(report),
          logger: pino({ level: 'silent' }),
          afterSave: (state) => {
            if (this.armed && this.crash && state === this.crash.at && this.crash.times > 0) {
              this.crash.times--;
              this.crashed = true;
              throw new SimulatedCrash(state);
            }
          },
        });
      }

      /** Crashes are injected only once the deployment under test started. */
      armed = false;

      /** Applies a deployment, then performs every reboot and restart it leads to until it settles. */
      async deploy(deployment: Deployment): Promise<void> {
        await this.manager.apply(await sent(deployment));
        await this.settle();
      }

      async settle(): Promise<void> {
        for (let step = 0; step < 20; step++) {
          if (this.crashed) {
            this.crashed = false;
            await this.restart(() => {
              if (this.crash?.how === 'power') this.pi.powerCycle();
            });
          } else if (this.pi.rebootRequests.length > 0) {
            await this.restart(() => this.pi.performReboot());
          } else {
            return;
          }
        }
        throw new Error('the device did not settle after 20 restarts');
      }

      /** Stops the manager (what a kill or a reboot does to it), does `between`, starts a new one. */
      async restart(between: () => void): Promise<void> {
        await this.manager.stop();
        between();
        this.manager = this.create();
        await this.manager.start();
      }

      get config(): string {
        return readFileSync(this.pi.configPath, 'utf8');
      }

      /** Whether tryboot.txt or trial.txt still arms a slot. */
      get leftArmed(): boolean {
        return existsSync(join(this.pi.bootDir, armedFile)) || existsSync(this.pi.trybootPath);
      }
    }

    it('installs into slot b, reboots to try it, health-checks, commits slot b in config.txt, and reports each step', async () => {
      const agent = new PiAgent();
      await agent.manager.apply(await sent(images.v2));
      // The manager stops at awaiting-reboot, having asked for the reboot that tries slot b.
      expect(agent.manager.current.state).toBe(UpdateState.AwaitingReboot);
      expect(agent.pi.rebootRequests).toEqual([tryReboot]);
      await agent.settle();

      expect(agent.manager.current).toMatchObject({
        state: UpdateState.Committed,
        running: { version: '2.0.0' },
      });
      expect(agent.pi.boots).toEqual(['a', 'b']);
      expect(agent.pi.initramfsLog).toEqual(initramfsSays.committed);
      expect(agent.pi.runningVersion).toBe('2.0.0');
      expect(agent.config).toMatch(/^os_prefix=slot-b\/$/m);
      expect(agent.leftArmed).toBe(false);
      expect([...new Set(agent.reports.map((report) => report.state))]).toEqual([
        'downloading',
        'installing',
        'awaiting-reboot',
        'installed',
      ]);
      expect(readdirSync(join(agent.pi.dataDir, 'downloads'))).toEqual([]);
    });

    it('rolls back when the new slot never comes up: the next power cycle returns to slot a, nothing is left armed, the agent says why', async () => {
      const agent = new PiAgent();
      await agent.deploy(images.neverComesUp);

      expect(agent.pi.boots).toEqual(failedTrialBoots);
      expect(agent.pi.initramfsLog).toEqual(initramfsSays.failed);
      expect(agent.manager.current).toMatchObject({
        state: UpdateState.RolledBack,
        running: null,
        reason: failedTrialReason,
      });
      expect(agent.reports.at(-1)).toEqual({
        deploymentId: `dep-${NEVER_COMES_UP}`,
        state: 'rolled-back',
        reason: failedTrialReason,
      });
      expect(agent.leftArmed).toBe(false);
      expect(agent.config).toMatch(/^os_prefix=slot-a\/$/m);
      expect(agent.pi.rebootLog).toEqual([tryReboot]);
    });

    it('rolls back when health fails on the new slot: a normal reboot returns to slot a, where the rollback finishes', async () => {
      const agent = new PiAgent();
      await agent.deploy(images.neverConnects);

      expect(agent.pi.rebootLog).toEqual([tryReboot, 'normal']);
      expect(agent.pi.boots).toEqual(['a', 'b', 'a']);
      expect(agent.manager.current).toMatchObject({
        state: UpdateState.RolledBack,
        reason: 'the agent on slot b did not connect to the server within 1 s',
      });
      expect(agent.config).toMatch(/^os_prefix=slot-a\/$/m);
      expect(agent.leftArmed).toBe(false);
      expect(agent.reports.at(-1)).toMatchObject({ state: 'rolled-back' });
    });

    it('fails a payload whose rootfs does not match its payload.json without arming or rebooting anything', async () => {
      const agent = new PiAgent();
      await agent.deploy(images.corrupt);

      expect(agent.manager.current.state).toBe(UpdateState.Failed);
      expect(agent.manager.current.reason).toMatch(
        /^pi-minimal 7\.0\.0: rootfs\.squashfs has sha256 [0-9a-f]{64}; payload\.json says [0-9a-f]{64} \(a corrupt payload\)$/,
      );
      expect(agent.pi.rebootLog).toEqual([]);
      expect(agent.leftArmed).toBe(false);
      expect(agent.reports.at(-1)).toMatchObject({ deploymentId: 'dep-7.0.0', state: 'failed' });
    });

    it('asks again for the reboot that did not happen when only the agent restarted', async () => {
      const agent = new PiAgent();
      await agent.manager.apply(await sent(images.v2));
      expect(agent.pi.rebootRequests).toEqual([tryReboot]);
      // The helper returned without rebooting and the agent was restarted: same boot, same slot.
      agent.pi.rebootRequests.length = 0;
      await agent.restart(() => {});
      expect(agent.pi.rebootRequests).toEqual([tryReboot]);
      await agent.settle();
      expect(agent.manager.current).toMatchObject({
        state: UpdateState.Committed,
        running: { version: '2.0.0' },
      });
      expect(agent.pi.boots).toEqual(['a', 'b']);
    });

    it('keeps a deployment that arrives while the device waits for its reboot, and applies it after the reboot', async () => {
      const agent = new PiAgent();
      await agent.manager.apply(await sent(images.v2));
      await agent.manager.apply(await sent(images.v3));
      expect(agent.manager.current).toMatchObject({
        state: UpdateState.AwaitingReboot,
        deployment: { id: 'dep-2.0.0' },
        deferred: { id: 'dep-3.0.0' },
      });
      await agent.settle();

      expect(agent.manager.current).toMatchObject({
        state: UpdateState.Committed,
        running: { version: '3.0.0' },
      });
      expect(agent.pi.boots).toEqual(['a', 'b', 'a']);
      expect(agent.pi.runningVersion).toBe('3.0.0');
      expect(
        agent.reports.filter((report) => report.state === 'installed').map((r) => r.deploymentId),
      ).toEqual(['dep-2.0.0', 'dep-3.0.0']);
    });

    it('declares a loop when the agent keeps dying in the health check on the new slot, and reboots back to the old one', async () => {
      const agent = new PiAgent({ at: UpdateState.HealthChecking, how: 'agent', times: 3 });
      agent.armed = true;
      await agent.deploy(images.v2);

      expect(agent.manager.current).toMatchObject({
        state: UpdateState.RolledBack,
        reason: 'update loop: entered health-checking 4 times',
      });
      expect(agent.pi.rebootLog).toEqual([tryReboot, 'normal']);
      expect(agent.pi.runningSlot).toBe('a');
      expect(agent.config).toMatch(/^os_prefix=slot-a\/$/m);
    });

    /** v2 is committed in slot b first; the deployment under test goes into slot a. */
    const KILL_AT = [
      { at: UpdateState.Downloading, how: 'agent', image: 'v3', ends: UpdateState.Committed, runs: '3.0.0' },
      { at: UpdateState.Verifying, how: 'agent', image: 'v3', ends: UpdateState.Committed, runs: '3.0.0' },
      { at: UpdateState.Installing, how: 'agent', image: 'v3', ends: UpdateState.Committed, runs: '3.0.0' },
      { at: UpdateState.Installing, how: 'power', image: 'v3', ends: UpdateState.Committed, runs: '3.0.0' },
      // Saved, but the reboot was not asked for yet: it is asked for after the restart.
      {
        at: UpdateState.AwaitingReboot,
        how: 'agent',
        image: 'v3',
        ends: UpdateState.Committed,
        runs: '3.0.0',
      },
      {
        at: UpdateState.AwaitingReboot,
        how: 'power',
        image: 'v3',
        ends: UpdateState.Committed,
        runs: '3.0.0',
      },
      {
        at: UpdateState.AwaitingReboot,
        how: 'agent',
        image: 'neverComesUp',
        ends: UpdateState.RolledBack,
        runs: '2.0.0',
      },
      {
        at: UpdateState.HealthChecking,
        how: 'agent',
        image: 'v3',
        ends: UpdateState.Committed,
        runs: '3.0.0',
      },
      // Power lost on the new slot before the commit: the firmware (tryboot) or the initramfs
      // (trial.txt says booted=1) returns to the committed slot b.
      {
        at: UpdateState.HealthChecking,
        how: 'power',
        image: 'v3',
        ends: UpdateState.RolledBack,
        runs: '2.0.0',
      },
      { at: UpdateState.Committed, how: 'power', image: 'v3', ends: UpdateState.Committed, runs: '3.0.0' },
      {
        at: UpdateState.RollingBack,
        how: 'agent',
        image: 'neverConnects',
        ends: UpdateState.RolledBack,
        runs: '2.0.0',
      },
      {
        at: UpdateState.RollingBack,
        how: 'power',
        image: 'neverConnects',
        ends: UpdateState.RolledBack,
        runs: '2.0.0',
      },
      {
        at: UpdateState.RolledBack,
        how: 'power',
        image: 'neverConnects',
        ends: UpdateState.RolledBack,
        runs: '2.0.0',
      },
      { at: UpdateState.Failed, how: 'power', image: 'corrupt', ends: UpdateState.Failed, runs: '2.0.0' },
    ] as const;

    it('kills the agent at every state the update machine saves', () => {
      expect([...new Set([...KILL_AT.map((entry) => entry.at), UpdateState.Idle])].sort()).toEqual(
        Object.values(UpdateState).sort(),
      );
    });

    it.each(KILL_AT)(
      'killed ($how) in $at with $image, it resumes and ends $ends running $runs',
      async ({ at, how, image: name, ends, runs }) => {
        const crash = { at, how, times: 1 };
        const agent = new PiAgent(crash);
        await agent.deploy(images.v2);
        expect(agent.pi.runningSlot).toBe('b');
        agent.armed = true;
        await agent.deploy(images[name]);

        expect(crash.times).toBe(0);
        expect(agent.manager.current).toMatchObject({
          state: ends,
          deployment: { artifact: 'pi-minimal' },
          running: { version: runs },
        });
        // The Pi runs that version, from the slot config.txt commits, and nothing is left armed.
        expect(agent.pi.runningVersion).toBe(runs);
        expect(agent.config).toMatch(new RegExp(`^os_prefix=slot-${agent.pi.runningSlot}/$`, 'm'));
        expect(agent.leftArmed).toBe(false);
        expect(agent.reports.at(-1)?.state).toBe(
          {
            [UpdateState.Committed]: 'installed',
            [UpdateState.RolledBack]: 'rolled-back',
            [UpdateState.Failed]: 'failed',
          }[ends],
        );
      },
    );
  },
);
