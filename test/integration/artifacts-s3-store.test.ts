import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { startServer } from '../../server/boardfleet-server.ts';
import { loadServerConfig } from '../../server/config/config.ts';
import { sqliteBackend } from '../support/databases.ts';
import { type S3TestServer, startS3Server } from '../support/s3-server.ts';
import { startTestServer, type TestServer, TLS_ON_FREE_PORTS } from '../support/test-server.ts';

/** The server with BOARDFLEET_ARTIFACT_STORE=s3 against s3rver, an S3 protocol server. */
describe('artifacts kept in an S3 bucket', () => {
  let s3: S3TestServer;
  let server: TestServer;
  let artifact: ArtifactRecord;
  const content = randomBytes(300 * 1024);
  const s3Environment = () => ({
    BOARDFLEET_ARTIFACT_STORE: 's3',
    BOARDFLEET_S3_ENDPOINT: s3.endpoint,
    BOARDFLEET_S3_BUCKET: s3.bucket,
    BOARDFLEET_S3_PATH_STYLE: '1',
  });
  const download = (headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${server.httpUrl}/api/v1/artifacts/${artifact.id}/content`, {
      method,
      headers: { authorization: `Bearer ${server.adminToken}`, ...headers },
    });

  beforeAll(async () => {
    s3 = await startS3Server();
    // The AWS SDK's standard credential chain reads these, as in production.
    vi.stubEnv('AWS_ACCESS_KEY_ID', s3.credentials.AWS_ACCESS_KEY_ID);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', s3.credentials.AWS_SECRET_ACCESS_KEY);
    server = await startTestServer(sqliteBackend, s3Environment());
    const query = new URLSearchParams({
      name: 'bucket-app',
      version: '1.0.0',
      kind: 'app-bundle',
      boards: 'rpi-4b',
      sha256: sha256(content),
      size: String(content.length),
    });
    const response = await fetch(`${server.httpUrl}/api/v1/artifacts?${query}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/octet-stream' },
      body: content,
    });
    expect(response.status).toBe(201);
    artifact = (await response.json()) as ArtifactRecord;
  }, 60_000);
  afterAll(async () => {
    await server?.dispose();
    await s3?.dispose();
    vi.unstubAllEnvs();
  });

  it('puts the upload in the bucket under sha256/ab/abcdef…, and nothing in the data folder', async () => {
    const client = new S3Client({ region: 'us-east-1', endpoint: s3.endpoint, forcePathStyle: true });
    try {
      const key = `sha256/${artifact.sha256.slice(0, 2)}/${artifact.sha256}`;
      const head = await client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
      expect(head.ContentLength).toBe(content.length);
    } finally {
      client.destroy();
    }
    expect(existsSync(join(server.dataDir, 'artifacts', 'sha256'))).toBe(false);
    expect(readdirSync(join(server.dataDir, 'artifacts', 'incoming'))).toEqual([]);
  });

  it('serves the whole content with its sha256 as ETag', async () => {
    const response = await download();
    expect(response.status).toBe(200);
    expect(response.headers.get('etag')).toBe(`"${artifact.sha256}"`);
    expect(response.headers.get('x-artifact-sha256')).toBe(artifact.sha256);
    expect(response.headers.get('content-length')).toBe(String(content.length));
    expect(Buffer.from(await response.arrayBuffer()).equals(content)).toBe(true);
  });

  it('resumes a download from a byte offset with 206 and the range it sends', async () => {
    const response = await download({ range: 'bytes=1000-' });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 1000-${content.length - 1}/${content.length}`);
    expect(Buffer.from(await response.arrayBuffer()).equals(content.subarray(1000))).toBe(true);

    const slice = await download({ range: 'bytes=10-19' });
    expect(slice.status).toBe(206);
    expect(Buffer.from(await slice.arrayBuffer()).equals(content.subarray(10, 20))).toBe(true);
  });

  it('answers a range past the end with 416 and the size', async () => {
    const response = await download({ range: `bytes=${content.length}-` });
    expect(response.status).toBe(416);
    expect(response.headers.get('content-range')).toBe(`bytes */${content.length}`);
  });

  it('sends the whole content when If-Range names another version, or several ranges are asked', async () => {
    const wholeAnswered: Record<string, string>[] = [
      { range: 'bytes=1000-', 'if-range': '"another-version"' },
      { range: 'bytes=0-9,500-509' },
    ];
    for (const headers of wholeAnswered) {
      const response = await download(headers);
      expect(response.status).toBe(200);
      expect(Buffer.from(await response.arrayBuffer()).equals(content)).toBe(true);
    }
    const matching = await download({ range: 'bytes=1000-', 'if-range': `"${artifact.sha256}"` });
    expect(matching.status).toBe(206);
    await matching.arrayBuffer();
  });

  it('answers 304 to a client whose copy has the same ETag, and HEAD with headers only', async () => {
    // fetch adds "cache-control: no-cache" (an end-to-end reload) to a conditional request unless told otherwise.
    const conditional = { 'if-none-match': `"${artifact.sha256}"`, 'cache-control': 'max-age=0' };
    expect((await download(conditional)).status).toBe(304);
    const head = await download({}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String(content.length));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('refuses to start on a bucket that does not exist, naming it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-s3-missing-bucket-'));
    try {
      const config = loadServerConfig({
        ...s3Environment(),
        BOARDFLEET_S3_BUCKET: 'no-such-bucket',
        ...TLS_ON_FREE_PORTS,
        BOARDFLEET_DATA_DIR: dataDir,
        BOARDFLEET_HTTP_PORT: '0',
        BOARDFLEET_MQTT_PORT: '0',
        BOARDFLEET_HTTP_HOST: '127.0.0.1',
        BOARDFLEET_MQTT_HOST: '127.0.0.1',
      });
      await expect(startServer(config, { logger: pino({ level: 'silent' }) })).rejects.toThrow(
        /S3 bucket no-such-bucket at http:\/\/127\.0\.0\.1:\d+\) cannot be read.*NoSuchBucket/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses BOARDFLEET_ARTIFACT_STORE=s3 without a bucket, and a store it does not know', () => {
    expect(() => loadServerConfig({ BOARDFLEET_ARTIFACT_STORE: 's3' })).toThrow(
      'BOARDFLEET_S3_BUCKET must name the bucket when BOARDFLEET_ARTIFACT_STORE=s3',
    );
    expect(() => loadServerConfig({ BOARDFLEET_ARTIFACT_STORE: 'nfs' })).toThrow(
      'BOARDFLEET_ARTIFACT_STORE=nfs must be folder or s3',
    );
  });
});
