import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { ChunkServerDouble } from './chunk-server.double.ts';
import { type AssemblyStep, downloadFiles } from './delta-download.ts';
import { UpdateManager, type UpdateReport } from './update-manager.ts';
import { UpdateState } from './update-state-machine.ts';
import type { UpdateStrategy } from './update-strategy.ts';

const work = mkdtempSync(join(tmpdir(), 'boardfleet-delta-manager-'));

/** Three versions of a 1.5 MB artifact, each with one place changed from the one before. */
const v1 = randomBytes(1536 * 1024);
const next = (from: Buffer, at: number) =>
  Buffer.concat([from.subarray(0, at), randomBytes(2000), from.subarray(at + 2000)]);
const v2 = next(v1, 400_000);
const v3 = next(v2, 1_100_000);

/** A strategy without seeds of its own (as app bundles): it "runs" the bytes it installed. */
class RecordingStrategy implements UpdateStrategy {
  readonly kind = 'app-bundle';
  runs: Buffer | null = null;
  async install(artifactPath: string): Promise<{ needsReboot: boolean }> {
    this.runs = readFileSync(artifactPath);
    return { needsReboot: false };
  }
  async healthCheck(): Promise<{ healthy: true }> {
    return { healthy: true };
  }
  async commit(_manifest: ArtifactManifest): Promise<void> {}
  async rollback(): Promise<{ needsReboot: boolean }> {
    return { needsReboot: false };
  }
  async resume(): Promise<void> {}
  async stop(): Promise<void> {}
}

describe('update manager: delta first, the whole artifact when the delta cannot be', () => {
  let server: ChunkServerDouble;
  let dataDir: string;
  const managers: UpdateManager[] = [];

  beforeAll(async () => {
    server = await ChunkServerDouble.start();
    await server.publish('v1', v1);
    await server.publish('v2', v2);
    await server.publish('v3', v3);
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    dataDir = mkdtempSync(join(work, 'device-'));
    server.requests.length = 0;
    server.faults.corrupt.clear();
    Object.assign(server.faults, { badSignature: false });
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((manager) => manager.stop()));
  });

  function manager(reports: UpdateReport[], onAssemblyStep?: (step: AssemblyStep) => void) {
    const strategy = new RecordingStrategy();
    const created = new UpdateManager({
      dataDir,
      serverUrl: server.url,
      auth: { deviceId: 'dev-1', secret: 'secret' },
      fleetPublicKeyPem: server.fleetPublicKeyPem,
      strategies: { 'app-bundle': strategy },
      report: (report) => reports.push(report),
      logger: pino({ level: 'silent' }),
      ...(onAssemblyStep ? { onAssemblyStep } : {}),
    });
    managers.push(created);
    return { updates: created, strategy };
  }

  const transferOf = (reports: UpdateReport[]) => reports.find((report) => report.transfer)?.transfer;
  const seeds = (name: string) => join(dataDir, 'seeds', name);

  /** v1 installed whole (nothing to assemble from), committed and kept as the seed. */
  async function onV1(reports: UpdateReport[] = []) {
    const device = manager(reports);
    await device.updates.apply(server.deployment('v1', { version: '1.0.0' }));
    return device;
  }

  it('downloads the first version whole, then assembles the next from it and keeps each committed one', async () => {
    const reports: UpdateReport[] = [];
    const { updates, strategy } = await onV1(reports);
    expect(transferOf(reports)).toEqual({
      mode: 'full',
      bytes: v1.length,
      artifactBytes: v1.length,
      fallback: 'no seed: nothing on this device to assemble the app-bundle update from',
    });
    expect(readFileSync(seeds('app-bundle.artifact')).equals(v1)).toBe(true);

    reports.length = 0;
    await updates.apply(server.deployment('v2', { version: '2.0.0' }));
    expect(updates.current).toMatchObject({ state: UpdateState.Committed, running: { version: '2.0.0' } });
    expect(strategy.runs?.equals(v2)).toBe(true);
    const transfer = transferOf(reports);
    expect(transfer).toMatchObject({ mode: 'delta', artifactBytes: v2.length });
    expect(transfer?.bytes).toBe(server.answeredBytes('chunk-index') + server.answeredBytes('chunks'));
    expect(transfer?.bytes).toBeLessThan(v2.length / 10);
    expect(server.answeredBytes('content')).toBe(v1.length);
    // Progress in deciles while assembling, then 100 % once, with the transfer.
    const progress = reports
      .filter((report) => report.state === 'downloading')
      .map((report) => report.progress);
    expect(progress.at(-1)).toBe(100);
    expect(progress.filter((value) => value === 100)).toHaveLength(1);
    expect(readFileSync(seeds('app-bundle.artifact')).equals(v2)).toBe(true);
    expect(readdirSync(join(dataDir, 'downloads'))).toEqual([]);

    // The next index comes as a delta of the kept one.
    const base = readFileSync(seeds('app-bundle.chunk-index'));
    server.requests.length = 0;
    reports.length = 0;
    await updates.apply(server.deployment('v3', { version: '3.0.0' }));
    const asked = server.requests.find((request) => request.path.endsWith('/chunk-index'));
    expect(asked?.base).toBe(sha256(base));
    expect(asked?.answered).toBeLessThan(1000);
    expect(transferOf(reports)).toMatchObject({ mode: 'delta' });
    expect(strategy.runs?.equals(v3)).toBe(true);
  });

  it('falls back to the whole artifact when a chunk arrives corrupt twice, and says why', async () => {
    await onV1();
    const index = await server.publish('v2', v2);
    const fresh = index.chunks.findIndex(
      (chunk) => !v1.includes(v2.subarray(chunk.offset, chunk.offset + chunk.length)),
    );
    server.faults.corrupt.set(fresh, 2);
    server.requests.length = 0;
    const reports: UpdateReport[] = [];
    const { updates, strategy } = manager(reports);
    await updates.apply(server.deployment('v2', { version: '2.0.0' }));
    expect(updates.current.state).toBe(UpdateState.Committed);
    expect(strategy.runs?.equals(v2)).toBe(true);
    const transfer = transferOf(reports);
    expect(transfer).toMatchObject({
      mode: 'full',
      artifactBytes: v2.length,
      fallback: expect.stringMatching(
        new RegExp(`^delta failed: chunk ${fresh} .* did not arrive intact twice`),
      ),
    });
    // Both crossed the network: the delta's index and chunks, then the whole artifact.
    expect(transfer?.bytes).toBe(server.answeredBytes());
    expect(server.answeredBytes('content')).toBe(v2.length);
  });

  it('refuses an index the fleet key did not sign and downloads the whole artifact', async () => {
    await onV1();
    server.faults.badSignature = true;
    const reports: UpdateReport[] = [];
    const { updates } = manager(reports);
    await updates.apply(server.deployment('v2', { version: '2.0.0' }));
    expect(updates.current.state).toBe(UpdateState.Committed);
    expect(transferOf(reports)?.fallback).toMatch(
      /^delta failed: the chunk index signature does not match the fleet key/,
    );
  });

  it('fails the deployment on a full disk, with the reason, and leaves what runs and its seed alone', async () => {
    await onV1();
    const files = downloadFiles(join(dataDir, 'downloads'), sha256(v2));
    symlinkSync('/dev/full', files.assembling);
    const reports: UpdateReport[] = [];
    // The disk is just as full for the whole download that follows the failed delta.
    const { updates } = manager(reports, (step) => {
      if (step === 'seeds') symlinkSync('/dev/full', files.artifact);
    });
    await updates.apply(server.deployment('v2', { version: '2.0.0' }));
    expect(updates.current).toMatchObject({ state: UpdateState.Failed, running: { version: '1.0.0' } });
    expect(reports.at(-1)).toMatchObject({ state: 'failed' });
    expect(reports.at(-1)?.reason).toMatch(
      /^cannot write the download to .*\.artifact: ENOSPC: no space left on device, write \(after a delta failed: writing .*\.assembling failed: ENOSPC: no space left on device, write\)$/,
    );
    expect(readFileSync(seeds('app-bundle.artifact')).equals(v1)).toBe(true);
  });

  it.each<AssemblyStep>(['index', 'seeds', 'copied', 'fetched-batch', 'verified'])(
    'resumes an assembly the agent was stopped in at %s, and finishes it by delta',
    async (at) => {
      await onV1();
      let stopped: Promise<void> | null = null;
      const killed = manager([], (step) => {
        if (step === at && !stopped) stopped = killed.updates.stop();
      });
      await killed.updates.apply(server.deployment('v2', { version: '2.0.0' }));
      await stopped;
      expect(killed.updates.current.state).toBe(UpdateState.Downloading);
      expect(killed.strategy.runs).toBeNull();

      const reports: UpdateReport[] = [];
      const again = manager(reports);
      await again.updates.start();
      expect(again.updates.current).toMatchObject({
        state: UpdateState.Committed,
        running: { version: '2.0.0' },
      });
      expect(again.strategy.runs?.equals(v2)).toBe(true);
      expect(transferOf(reports)).toMatchObject({ mode: 'delta' });
      expect(server.answeredBytes('content')).toBe(v1.length);
    },
  );
});
