import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevicePage } from '../../protocol/api/devices.ts';
import type { RolloutStatus } from '../../protocol/api/rollouts.ts';
import { type ArtifactManifest, canonicalManifest } from '../../protocol/manifest.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { SigningKeyRepository } from '../../server/artifacts/signing-key.repository.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { RolloutRepository } from '../../server/rollouts/rollout.repository.ts';
import { secretFile, startAgentProcess, stopProcess } from '../support/agent-process.ts';
import { buildAppBundle, releaseAppBundle } from '../support/app-bundles.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { cliRunner } from '../support/cli-runner.ts';
import { sqliteBackend } from '../support/databases.ts';
import { deploymentRefusal, publishAsServer } from '../support/forged-desired.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

type Deployment = NonNullable<DesiredState['deployment']>;
const BOARD = 'generic-x64';
const SLOW = 90_000;

/**
 * Issue 16 items 6 and 8: an agent that trusts the fleet's TUF root installs only what targets
 * signs. Each attack is a desired state published on the broker as the server's session would,
 * with a manifest signed by the online fleet key (an attacker who holds both): each ends with
 * nothing installed and its reason reported to the server.
 */
describe('updates verified against the fleet TUF metadata by a real agent', () => {
  let server: TestServer;
  let agent: ReturnType<typeof startAgentProcess>;
  let deviceId: string;
  let running: Deployment;
  let older: Deployment;
  let forged = 0;

  const device = async () =>
    (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
      (d) => d.id === deviceId,
    );

  /** `deployment` with a manifest saying what it says, signed by the fleet's online manifest key. */
  function withForgedManifest(deployment: Deployment): Deployment {
    const manifest: ArtifactManifest = {
      ...(JSON.parse(deployment.manifest) as ArtifactManifest),
      name: deployment.artifact,
      version: deployment.version,
      sha256: deployment.sha256,
      size: deployment.size,
    };
    const text = canonicalManifest(manifest);
    return {
      ...deployment,
      manifest: text,
      signature: SigningKeyRepository.load(server.dataDir, null).sign(text),
    };
  }

  /** Publishes a desired state as the server's session would; returns its deployment id. */
  async function forge(deployment: Deployment): Promise<string> {
    const id = `dep-forged-${++forged}`;
    await publishAsServer(server, deviceId, { ...deployment, id });
    return id;
  }

  const refusalOf = (deploymentId: string) => deploymentRefusal(server, deviceId, deploymentId, SLOW);

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    const cli = cliRunner({ url: server.httpUrl, token: server.adminToken });
    await cli.ok(
      'keys',
      'init',
      '--holders',
      '2',
      '--threshold',
      '2',
      '--out',
      mkdtempSync(join(tmpdir(), 'bf-root-')),
    );
    const token = (
      await server.api<{ token: string }>('POST', '/api/v1/provisioning-tokens', { name: 'tuf' })
    ).body.token;
    agent = startAgentProcess([
      ...[
        '--server',
        `https://127.0.0.1:${server.httpsPort}`,
        '--provisioning-token-file',
        secretFile(token),
      ],
      ...['--name', 'tuf-pi', '--board', BOARD, '--data-dir', mkdtempSync(join(tmpdir(), 'bf-tuf-agent-'))],
    ]);
    deviceId = await eventually(
      'the agent online',
      async () =>
        (await server.api<DevicePage>('GET', '/api/v1/devices?limit=10')).body.devices.find(
          (candidate) => candidate.name === 'tuf-pi' && candidate.online,
        )?.id,
      SLOW,
    );
    const previous = await uploadArtifact(server, await buildAppBundle({ name: 'hello', version: '1.0.0' }), {
      name: 'hello',
      version: '1.0.0',
      boards: [BOARD],
    });
    older = deploymentFromArtifact(previous, 'dep-older');
  }, SLOW * 2);

  afterAll(async () => {
    if (agent) await stopProcess(agent, 'SIGTERM');
    await server?.dispose();
  });

  it(
    'installs a release that targets signs, saying what the metadata cost',
    async () => {
      const { release } = await releaseAppBundle(server, BOARD, { name: 'hello', version: '2.0.0' });
      const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
        release,
        target: { deviceIds: [deviceId] },
        waves: [{ percent: 100, soakSeconds: 1 }],
      });
      expect(created.status).toBe(201);
      await eventually(
        'the rollout completed',
        async () =>
          (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${created.body.id}`)).body.state ===
          'completed',
        SLOW,
      );
      expect(agent.output()).toMatch(/hello 2\.0\.0 is signed by the fleet's targets metadata/);
      expect(agent.output()).toMatch(/"metadataBytes":\d+/);
      running = (await new RolloutRepository(server.db).desired(deviceId))?.deployment as Deployment;
      expect(running.version).toBe('2.0.0');
    },
    SLOW * 2,
  );

  it(
    'refuses arbitrary software: a version targets does not list, though its manifest is signed',
    async () => {
      const id = await forge(withForgedManifest({ ...running, version: '9.9.9' }));
      expect(await refusalOf(id)).toMatch(/no signed target for hello 9\.9\.9/);
      expect((await device())?.runningVersion).toBe('2.0.0');
    },
    SLOW,
  );

  it(
    'refuses other bytes under a signed name and version',
    async () => {
      const id = await forge(withForgedManifest({ ...running, sha256: 'e'.repeat(64) }));
      expect(await refusalOf(id)).toMatch(/the signed target for hello 2\.0\.0 says sha256 [0-9a-f]{64}/);
      expect((await device())?.runningVersion).toBe('2.0.0');
    },
    SLOW,
  );

  it(
    'refuses a downgrade with no signed rollback order, and one naming an order targets does not sign',
    async () => {
      const unordered = await forge(older);
      expect(await refusalOf(unordered)).toMatch(
        /older than the running 2\.0\.0 and no signed rollback order/,
      );
      const unsigned = await forge({ ...older, rollbackOrder: 'made-up' });
      expect(await refusalOf(unsigned)).toMatch(
        /rollback order made-up is not in the fleet's signed targets/,
      );
      expect((await device())?.runningVersion).toBe('2.0.0');
    },
    SLOW,
  );

  it(
    'goes back with a rollback order the targets key signed',
    async () => {
      const order = await server.api<{ id: string }>('POST', '/api/v1/tuf/rollback-orders', {
        device: deviceId,
        from: '2.0.0',
        to: '1.0.0',
      });
      expect(order.status).toBe(201);
      await forge({ ...older, rollbackOrder: order.body.id });
      await eventually(
        'the device back on 1.0.0',
        async () => (await device())?.runningVersion === '1.0.0',
        SLOW,
      );
    },
    SLOW,
  );

  it(
    'is sent back by an aborted rollout, with a rollback order the server signed in targets',
    async () => {
      const created = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
        release: 'hello-2.0.0',
        target: { deviceIds: [deviceId] },
        waves: [{ percent: 100, soakSeconds: 600 }],
        rollbackOnAbort: true,
      });
      expect(created.status).toBe(201);
      await eventually(
        'the device on 2.0.0 again',
        async () => (await device())?.runningVersion === '2.0.0',
        SLOW,
      );
      expect((await server.api('POST', `/api/v1/rollouts/${created.body.id}/abort`)).status).toBe(200);
      await eventually(
        'the device back on 1.0.0',
        async () => (await device())?.runningVersion === '1.0.0',
        SLOW,
      );
      const order = (await new RolloutRepository(server.db).desired(deviceId))?.deployment?.rollbackOrder;
      expect(order).toMatch(new RegExp(`^${created.body.id}\\.`));
      const targets = (await (await fetch(`${server.httpUrl}/tuf/targets.json`)).json()) as {
        signed: { targets: Record<string, { custom: Record<string, unknown> }> };
      };
      expect(targets.signed.targets[`rollback-orders/${order}`]?.custom).toMatchObject({
        from: '2.0.0',
        to: '1.0.0',
      });
    },
    SLOW * 2,
  );
});
