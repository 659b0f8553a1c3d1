import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { Transfer } from '../../protocol/schemas.ts';
import { transferArtifact, type TransferRequest } from './artifact-transfer.ts';
import { ChunkServerDouble } from './chunk-server.double.ts';
import { downloadFiles } from './delta-download.ts';

const work = mkdtempSync(join(tmpdir(), 'boardfleet-transfer-'));
const artifact = randomBytes(600 * 1024);

describe('artifact transfer after an agent restart', () => {
  let server: ChunkServerDouble;
  let downloads: string;

  beforeAll(async () => {
    server = await ChunkServerDouble.start();
    await server.publish('v1', artifact);
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    downloads = mkdtempSync(join(work, 'downloads-'));
    server.requests.length = 0;
  });

  const files = () => downloadFiles(downloads, sha256(artifact));
  const transfer = (seedFile: string) => {
    const request: TransferRequest = {
      deployment: server.deployment('v1', { version: '1.0.0' }),
      serverUrl: server.url,
      auth: { deviceId: 'dev-1', secret: 'secret' },
      fleetPublicKeyPem: server.fleetPublicKeyPem,
      downloads,
      seeds: { sources: [{ path: seedFile, start: 0, length: artifact.length }], none: 'no seed' },
      baseIndex: null,
      signal: new AbortController().signal,
      onProgress: () => {},
      logger: pino({ level: 'silent' }),
    };
    return transferArtifact(request);
  };

  it('goes on with a full download a failed delta had begun, still saying why and counting both', async () => {
    writeFileSync(files().artifact, artifact.subarray(0, 100_000));
    const earlier: Transfer = {
      mode: 'full',
      bytes: 5_000,
      artifactBytes: artifact.length,
      fallback: 'delta failed: chunk 3 did not arrive intact twice',
    };
    writeFileSync(files().transfer, JSON.stringify(earlier));

    expect(await transfer(join(work, 'seed'))).toEqual({ ...earlier, bytes: 5_000 + artifact.length });
    expect(readFileSync(files().artifact).equals(artifact)).toBe(true);
    expect(server.requests.map((request) => request.path)).toEqual(['/api/v1/artifacts/v1/content']);
    expect(server.answeredBytes('content')).toBe(artifact.length - 100_000);
  });

  it('says an artifact assembled before the agent stopped came by delta, without asking the server again', async () => {
    writeFileSync(files().artifact, artifact);
    const earlier: Transfer = { mode: 'delta', bytes: 20_000, artifactBytes: artifact.length };
    writeFileSync(files().transfer, JSON.stringify(earlier));
    expect(await transfer(join(work, 'seed'))).toEqual(earlier);
    expect(server.requests).toEqual([]);
  });

  it('removes what other deployments left in the downloads folder', async () => {
    mkdirSync(join(downloads, 'stale'));
    writeFileSync(join(downloads, `${'0'.repeat(64)}.assembling`), 'old');
    const seed = join(work, 'seed-v1');
    writeFileSync(seed, artifact);
    expect(await transfer(seed)).toMatchObject({ mode: 'delta' });
    expect(readdirSync(downloads).sort()).toEqual(
      [
        `${sha256(artifact)}.artifact`,
        `${sha256(artifact)}.chunk-index`,
        `${sha256(artifact)}.transfer.json`,
      ].sort(),
    );
  });
});
