import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredState } from '../../protocol/schemas.ts';
import { deploymentFromArtifact } from '../../server/rollouts/rollout-engine.ts';
import { uploadArtifact } from '../../test/support/artifacts.ts';
import { freePort, sqliteBackend } from '../../test/support/databases.ts';
import { eventually, startTestServer, type TestServer } from '../../test/support/test-server.ts';
import { AppBundleStrategy } from './app-bundle.strategy.ts';
import { type UpdateManager as Manager, UpdateManager, type UpdateReport } from './update-manager.ts';
import { UpdateState } from './update-state-machine.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

/** Thrown from the save hook to stop the manager right after a state was written: a kill -9 there. */
class SimulatedCrash extends Error {}

describe('update manager with app bundles (real server, real processes)', () => {
  let server: TestServer;
  let auth: { deviceId: string; secret: string };
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
        healthCheck: { http: `http://127.0.0.1:${port}/`, timeoutSeconds: 3 },
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

  function manager(dataDir: string, reports: UpdateReport[], crash?: { at: UpdateState; armed: boolean }) {
    let crashed = false;
    const created = new UpdateManager({
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
    await updates.apply(bundles.v1);
    expect(updates.current).toMatchObject({ state: UpdateState.Committed, running: { version: '1.0.0' } });
    expect(await answer()).toBe('1.0.0');
    expect([...new Set(reports.map((report) => report.state))]).toEqual([
      'downloading',
      'installing',
      'installed',
    ]);
    // The same deployment again changes nothing and re-reports its outcome.
    reports.length = 0;
    await updates.apply(bundles.v1);
    expect(reports).toEqual([{ deploymentId: 'dep-1.0.0', state: 'installed' }]);
  });

  it('rolls a failing bundle back to the version that ran before', async () => {
    const reports: UpdateReport[] = [];
    const updates = manager(mkdtempSync(join(work, 'bad-')), reports);
    await updates.apply(bundles.v1);
    await updates.apply(bundles.broken);
    expect(updates.current).toMatchObject({ state: UpdateState.RolledBack, running: { version: '1.0.0' } });
    expect(updates.current.reason).toMatch(/^health check failed after 3 s: app exited \(status 1\)$/);
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
      await first.apply(bundles.v1);
      crash.armed = true;
      await first.apply(bundles[name]);
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
