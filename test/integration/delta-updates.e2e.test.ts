import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StoredDeviceEvent } from '../../protocol/api/devices.ts';
import type { RolloutStatus } from '../../protocol/api/rollouts.ts';
import { decodeChunkIndex } from '../../protocol/chunk-index.ts';
import type { Transfer } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { blobKey } from '../../server/artifacts/blob-store.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type InProcessAgent, startInProcessFleet } from '../support/in-process-agents.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const BOARD = 'rpi-4b';
const TAG = 'delta';
const SLOW = 90_000;

/**
 * Issue 17 end to end: a real agent (in this process, through its composition root) against the
 * real server. App bundles of ~1.5 MB whose versions differ in one small file: the first arrives
 * whole (nothing to assemble it from), the next by delta from the bundle kept at commit, and one
 * whose new chunk was corrupted in the server's store arrives whole after the delta gave up.
 */
describe('delta updates: a real agent and the real server', () => {
  let server: TestServer;
  let agent: InProcessAgent;
  const work = mkdtempSync(join(tmpdir(), 'boardfleet-delta-e2e-'));
  /** The same for every version: what a delta need not fetch again. */
  const library = randomBytes(1536 * 1024);
  const artifacts: Record<string, ArtifactRecord> = {};

  /** A bundle whose only difference between versions is version.txt, last in the archive. */
  async function bundle(version: string): Promise<Buffer> {
    const dir = mkdtempSync(join(work, `bundle-${version}-`));
    writeFileSync(
      join(dir, 'boardfleet-app.json'),
      JSON.stringify({
        start: ['sleep', '100000'],
        healthCheck: { command: ['test', '-f', 'version.txt'], timeoutSeconds: 10 },
      }),
    );
    writeFileSync(join(dir, 'library.bin'), library);
    writeFileSync(join(dir, 'version.txt'), `${version}\n`);
    const file = join(dir, 'bundle.tar.gz');
    await tar.c({ gzip: true, file, cwd: dir, portable: true, mtime: new Date(0) }, [
      'boardfleet-app.json',
      'library.bin',
      'version.txt',
    ]);
    return readFileSync(file);
  }

  async function release(version: string): Promise<void> {
    const artifact = await uploadArtifact(server, await bundle(version), {
      name: 'app',
      version,
      boards: [BOARD],
    });
    artifacts[version] = artifact;
    const created = await server.api('POST', '/api/v1/releases', {
      name: `app-${version}`,
      artifacts: { [BOARD]: artifact.id },
    });
    expect(created.status).toBe(201);
  }

  /** Rolls a release out to the device and returns how its artifact came, once it runs it. */
  async function rollOut(version: string): Promise<Transfer> {
    const { body: rollout } = await server.api<{ id: string }>('POST', '/api/v1/rollouts', {
      release: `app-${version}`,
      target: { tags: [TAG] },
      waves: [{ percent: 100, soakSeconds: 0 }],
    });
    await eventually(
      `the rollout of ${version} completed`,
      async () =>
        (await server.api<RolloutStatus>('GET', `/api/v1/rollouts/${rollout.id}`)).body.state === 'completed',
      SLOW,
    );
    const { body } = await server.api<{ events: StoredDeviceEvent[] }>(
      'GET',
      `/api/v1/devices/${agent.deviceId}/events?from=0&limit=10000`,
    );
    const reported = body.events
      .filter((event) => event.type === 'deployment')
      .map((event) => (event.data as { transfer?: Transfer } | undefined)?.transfer)
      .filter((transfer) => transfer !== undefined);
    expect(reported.length).toBeGreaterThan(0);
    return reported.at(-1) as Transfer;
  }

  /** The artifact's chunk index as the server serves it (operators may read it too). */
  async function chunkIndex(version: string) {
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts/${artifacts[version]?.id}/chunk-index`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    expect(response.status).toBe(200);
    return decodeChunkIndex(Buffer.from(await response.arrayBuffer()));
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
    [agent] = (await startInProcessFleet(server, { tag: TAG, count: 1, board: BOARD })) as [InProcessAgent];
    for (const version of ['1.0.0', '2.0.0', '3.0.0']) await release(version);
  }, SLOW);
  afterAll(async () => {
    await agent?.dispose();
    await server?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  it(
    'downloads the first version whole, assembles the next by delta, and falls back to a full download when a chunk is corrupt',
    async () => {
      const size = (version: string) => artifacts[version]?.size as number;
      expect(await rollOut('1.0.0')).toEqual({
        mode: 'full',
        bytes: size('1.0.0'),
        artifactBytes: size('1.0.0'),
        fallback: 'no seed: nothing on this device to assemble the app-bundle update from',
      });

      const second = await rollOut('2.0.0');
      expect(second).toMatchObject({ mode: 'delta', artifactBytes: size('2.0.0') });
      expect(second.fallback).toBeUndefined();
      expect(second.bytes).toBeLessThan(size('2.0.0') / 10);

      // One chunk only 3.0.0 has, damaged where the server keeps it.
      const inSecond = new Set((await chunkIndex('2.0.0')).chunks.map((chunk) => chunk.sha256));
      const fresh = (await chunkIndex('3.0.0')).chunks.find((chunk) => !inSecond.has(chunk.sha256));
      if (!fresh) throw new Error('3.0.0 has no chunk of its own');
      const stored = join(server.dataDir, 'artifacts', blobKey(fresh.sha256));
      chmodSync(stored, 0o644);
      writeFileSync(stored, randomBytes(fresh.length));

      const third = await rollOut('3.0.0');
      expect(third).toMatchObject({
        mode: 'full',
        artifactBytes: size('3.0.0'),
        fallback: expect.stringMatching(
          new RegExp(`^delta failed: chunk \\d+ \\(${fresh.sha256}, .* did not arrive intact twice`),
        ),
      });
      // The delta's bytes and then the whole artifact.
      expect(third.bytes).toBeGreaterThan(size('3.0.0'));
      const { body: device } = await server.api<{ runningVersion: string }>(
        'GET',
        `/api/v1/devices/${agent.deviceId}`,
      );
      expect(device.runningVersion).toBe('3.0.0');
    },
    SLOW * 3,
  );
});
