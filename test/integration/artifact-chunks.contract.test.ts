import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { Artifact } from '../../protocol/api/artifacts.ts';
import {
  applyChunkIndexDelta,
  CHUNK_HTTP,
  chunkIndexSha256,
  chunkIndexSignatureValid,
  decodeChunkIndex,
} from '../../protocol/chunk-index.ts';
import { deploymentFromArtifact } from '../../server/rollouts/desired-deployment.ts';
import { sendToDevice, uploadArtifact } from '../support/artifacts.ts';
import { databaseBackends, sqliteBackend } from '../support/databases.ts';
import { type S3TestServer, startS3Server } from '../support/s3-server.ts';
import { eventually, startTestServer, type TestServer } from '../support/test-server.ts';

const MIB = 1024 * 1024;

/** `content` with a few bytes changed in its middle: the next version, one file edited. */
function edited(content: Buffer): Buffer {
  const copy = Buffer.from(content);
  for (let at = content.length / 2; at < content.length / 2 + 4; at++)
    copy.writeUInt8(255 - copy.readUInt8(at), at);
  return copy;
}

/** The chunk URLs beside a deployment's content URL, as an agent derives them. */
const chunkUrls = (server: TestServer, artifactId: string) => {
  const content = new URL(`/api/v1/artifacts/${artifactId}/content`, server.httpUrl);
  return {
    index: new URL(CHUNK_HTTP.indexPath, content).toString(),
    chunks: new URL(CHUNK_HTTP.chunksPath, content).toString(),
  };
};

const blobCount = (server: TestServer) =>
  readdirSync(join(server.dataDir, 'artifacts', 'sha256'), { recursive: true, withFileTypes: true }).filter(
    (entry) => entry.isFile(),
  ).length;

/** A device of the server with its HTTP Basic credentials. */
async function registerDevice(server: TestServer, name: string) {
  const { body } = await server.api<{ device: { id: string }; secret: string }>('POST', '/api/v1/devices', {
    name,
    board: 'rpi-4b',
  });
  return {
    id: body.device.id,
    authorization: `Basic ${Buffer.from(`${body.device.id}:${body.secret}`).toString('base64')}`,
  };
}

const askChunks = (url: string, authorization: string, body: unknown, signal?: AbortSignal) =>
  fetch(url, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });

describe.each(databaseBackends)('artifact chunks for delta updates on $name', (backend) => {
  let server: TestServer;
  let operator: string;
  let publicKeyPem: string;
  const v1 = randomBytes(MIB);
  const v2 = edited(v1);
  let first: Artifact;
  let second: Artifact;
  let device: { id: string; authorization: string };
  let blobsAfterFirst: number;
  let blobsAfterSecond: number;

  beforeAll(async () => {
    server = await startTestServer(backend);
    operator = `Bearer ${server.adminToken}`;
    publicKeyPem = (await server.api<{ publicKeyPem: string }>('GET', '/api/v1/fleet-key', undefined, ''))
      .body.publicKeyPem;
    const meta = { name: 'delta-app', boards: ['rpi-4b'] };
    first = (await uploadArtifact(server, v1, { ...meta, version: '1.0.0' })) as Artifact;
    blobsAfterFirst = blobCount(server);
    second = (await uploadArtifact(server, v2, { ...meta, version: '1.1.0' })) as Artifact;
    blobsAfterSecond = blobCount(server);
    device = await registerDevice(server, 'delta-device');
    await sendToDevice(server, device.id, deploymentFromArtifact(second, 'dep-delta'));
  });
  afterAll(async () => {
    await server?.dispose();
  });

  /** The artifact's index as an operator gets it, checked against its headers. */
  const fullIndex = async (artifact: Artifact) => {
    const response = await fetch(chunkUrls(server, artifact.id).index, {
      headers: { authorization: operator },
    });
    expect(response.status).toBe(200);
    const body = Buffer.from(await response.arrayBuffer());
    expect(response.headers.get(CHUNK_HTTP.encodingHeader)).toBe('full');
    expect(response.headers.get(CHUNK_HTTP.sha256Header)).toBe(chunkIndexSha256(body));
    return body;
  };

  it('says in the artifact answer how the artifact is chunked and what it shares with the version before', async () => {
    expect(first.chunks).toMatchObject({ newBytes: v1.length, previousVersion: null, sharedPercent: null });
    const { body: shown } = await server.api<Artifact>('GET', `/api/v1/artifacts/${second.id}`);
    expect(shown.chunks).toEqual(second.chunks);
    const chunks = shown.chunks!;
    expect(chunks.previousVersion).toBe('1.0.0');
    expect(chunks.newChunks).toBeGreaterThan(0);
    expect(chunks.newChunks).toBeLessThanOrEqual(3);
    expect(chunks.sharedPercent).toBeGreaterThan(80);
    expect(chunks.averageBytes).toBe(Math.round(v2.length / chunks.count));
    const { body: list } = await server.api<{ artifacts: Artifact[] }>(
      'GET',
      '/api/v1/artifacts?name=delta-app',
    );
    expect(list.artifacts.map((artifact) => [artifact.version, artifact.chunks?.indexSha256])).toEqual([
      ['1.1.0', chunks.indexSha256],
      ['1.0.0', first.chunks!.indexSha256],
    ]);
  });

  it('stores each chunk once: the second version adds only the chunks it changed', async () => {
    // Each version adds its own content, its index and its new chunks.
    expect(blobsAfterFirst).toBe(1 + 1 + first.chunks!.newChunks);
    expect(blobsAfterSecond - blobsAfterFirst).toBe(1 + 1 + second.chunks!.newChunks);
    await uploadArtifact(server, v2, { name: 'delta-app', version: '1.1.0', boards: ['rpi-4b'] });
    expect(blobCount(server)).toBe(blobsAfterSecond);
  });

  it('serves a device the index of what it was sent, signed by the fleet key', async () => {
    const response = await fetch(chunkUrls(server, second.id).index, {
      headers: { authorization: device.authorization },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/octet-stream');
    const body = Buffer.from(await response.arrayBuffer());
    const sha = response.headers.get(CHUNK_HTTP.sha256Header)!;
    expect(sha).toBe(chunkIndexSha256(body));
    expect(sha).toBe(second.chunks!.indexSha256);
    expect(
      chunkIndexSignatureValid(sha, response.headers.get(CHUNK_HTTP.signatureHeader)!, publicKeyPem),
    ).toBe(true);
    const index = decodeChunkIndex(body);
    expect(index.artifact).toEqual({ sha256: sha256(v2), size: v2.length });
    expect(index.chunks).toHaveLength(second.chunks!.count);
  });

  it('answers a device holding the previous index with a small delta that rebuilds the signed index', async () => {
    const base = await fullIndex(first);
    const target = await fullIndex(second);
    const response = await fetch(
      `${chunkUrls(server, second.id).index}?${CHUNK_HTTP.baseQuery}=${chunkIndexSha256(base)}`,
      { headers: { authorization: device.authorization } },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get(CHUNK_HTTP.encodingHeader)).toBe('delta');
    const delta = Buffer.from(await response.arrayBuffer());
    expect(delta.length).toBeLessThan(target.length / 10);
    const rebuilt = applyChunkIndexDelta(base, delta);
    expect(chunkIndexSha256(rebuilt)).toBe(response.headers.get(CHUNK_HTTP.sha256Header));
    expect(rebuilt.equals(target)).toBe(true);

    const unknownBase = await fetch(`${chunkUrls(server, second.id).index}?base=${'e'.repeat(64)}`, {
      headers: { authorization: device.authorization },
    });
    expect(unknownBase.headers.get(CHUNK_HTTP.encodingHeader)).toBe('full');
    expect(Buffer.from(await unknownBase.arrayBuffer()).equals(target)).toBe(true);
    const badBase = await fetch(`${chunkUrls(server, second.id).index}?base=latest`, {
      headers: { authorization: device.authorization },
    });
    expect(badBase.status).toBe(400);
  });

  it('sends the chunks asked for, in that order, as one brotli stream', async () => {
    const index = decodeChunkIndex(await fullIndex(second));
    const positions = [index.chunks.length - 1, 0, 5, 0];
    const response = await askChunks(chunkUrls(server, second.id).chunks, device.authorization, {
      chunks: positions,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe(CHUNK_HTTP.chunksMediaType);
    const bytes = brotliDecompressSync(Buffer.from(await response.arrayBuffer()));
    const expected = positions.map((position) => {
      const chunk = index.chunks[position]!;
      return v2.subarray(chunk.offset, chunk.offset + chunk.length);
    });
    expect(bytes.equals(Buffer.concat(expected))).toBe(true);
  });

  it.each([
    ['a position past the last chunk', (count: number) => ({ chunks: [0, count] }), 'outside the index'],
    ['a negative position', () => ({ chunks: [-1] }), 'chunks.0'],
    ['a fractional position', () => ({ chunks: [1.5] }), 'chunks.0'],
    ['no positions', () => ({ chunks: [] }), 'chunks'],
    [
      'too many positions',
      () => ({ chunks: new Array(CHUNK_HTTP.maxChunksPerRequest + 1).fill(0) }),
      'chunks',
    ],
    ['no list', () => ({}), 'chunks'],
  ])('refuses %s with 400', async (_label, body, message) => {
    const response = await askChunks(
      chunkUrls(server, second.id).chunks,
      device.authorization,
      body(second.chunks!.count),
    );
    expect(response.status).toBe(400);
    expect(((await response.json()) as { message: string }).message).toContain(message);
  });

  it('answers a device only for what it was sent, as the content route does', async () => {
    const stranger = await registerDevice(server, 'delta-stranger');
    const { index, chunks } = chunkUrls(server, second.id);
    const content = `${server.httpUrl}/api/v1/artifacts/${second.id}/content`;
    const statuses = async (authorization: string | null) => {
      const headers = authorization ? { authorization } : undefined;
      return [
        (await fetch(content, { headers })).status,
        (await fetch(index, { headers })).status,
        (await askChunks(chunks, authorization ?? '', { chunks: [0] })).status,
      ];
    };
    expect(await statuses(stranger.authorization)).toEqual([404, 404, 404]);
    expect(await statuses(null)).toEqual([401, 401, 401]);
    // The device was sent 1.1.0, not 1.0.0.
    expect(
      (await fetch(chunkUrls(server, first.id).index, { headers: { authorization: device.authorization } }))
        .status,
    ).toBe(404);
  });

  it('answers 404 for an artifact without an index', async () => {
    const small = (await uploadArtifact(server, randomBytes(1000), {
      name: 'delta-small',
      version: '1.0.0',
      boards: ['rpi-4b'],
    })) as Artifact;
    expect(small.chunks).toBeNull();
    const { index, chunks } = chunkUrls(server, small.id);
    const answer = await fetch(index, { headers: { authorization: operator } });
    expect(answer.status).toBe(404);
    expect(((await answer.json()) as { message: string }).message).toContain('has no chunk index');
    expect((await askChunks(chunks, operator, { chunks: [0] })).status).toBe(404);
  });

  it('survives clients that go away mid-answer, and cuts an answer short at a chunk it has lost', async () => {
    const url = chunkUrls(server, second.id).chunks;
    const many = {
      chunks: Array.from({ length: CHUNK_HTTP.maxChunksPerRequest }, (_, i) => i % second.chunks!.count),
    };
    const openFiles = () => readdirSync('/proc/self/fd').length;
    const before = openFiles();
    for (let attempt = 0; attempt < 5; attempt++) {
      const controller = new AbortController();
      const response = await askChunks(url, device.authorization, many, controller.signal);
      await response.body!.getReader().read();
      controller.abort();
    }
    await eventually('the chunk files of abandoned answers closed', () => openFiles() <= before);
    const whole = await askChunks(url, device.authorization, many);
    expect(brotliDecompressSync(Buffer.from(await whole.arrayBuffer())).length).toBeGreaterThan(8 * MIB);

    // Content of its own, so losing a chunk of it touches no other test.
    const own = (await uploadArtifact(server, randomBytes(MIB), {
      name: 'delta-lossy',
      version: '1.0.0',
      boards: ['rpi-4b'],
    })) as Artifact;
    const index = decodeChunkIndex(await fullIndex(own));
    const lost = index.chunks[index.chunks.length - 1]!.sha256;
    rmSync(join(server.dataDir, 'artifacts', 'sha256', lost.slice(0, 2), lost));
    const cut = await askChunks(chunkUrls(server, own.id).chunks, operator, {
      chunks: [...Array.from({ length: index.chunks.length - 1 }, (_, i) => i), index.chunks.length - 1],
    });
    expect(cut.status).toBe(200);
    await expect(cut.arrayBuffer()).rejects.toThrow();
    const refused = await askChunks(chunkUrls(server, own.id).chunks, operator, {
      chunks: [index.chunks.length - 1],
    });
    expect(refused.status).toBe(502);
    expect(((await refused.json()) as { code: string }).code).toBe('delta-unavailable');
    expect((await fetch(`${server.httpUrl}/healthz`)).status).toBe(200);
  });
});

describe('artifact chunks with BOARDFLEET_DELTA_UPDATES=off', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend, { BOARDFLEET_DELTA_UPDATES: 'off' });
  });
  afterAll(async () => {
    await server?.dispose();
  });

  it('chunks nothing, and answers both chunk routes with 404', async () => {
    const content = randomBytes(MIB);
    const before = blobCount(server);
    const artifact = (await uploadArtifact(server, content, {
      name: 'no-delta',
      version: '1.0.0',
      boards: ['rpi-4b'],
    })) as Artifact;
    expect(artifact.chunks).toBeNull();
    expect(blobCount(server)).toBe(before + 1);
    const authorization = `Bearer ${server.adminToken}`;
    const { index, chunks } = chunkUrls(server, artifact.id);
    const answer = await fetch(index, { headers: { authorization } });
    expect(answer.status).toBe(404);
    expect(((await answer.json()) as { message: string }).message).toContain('BOARDFLEET_DELTA_UPDATES=off');
    expect((await askChunks(chunks, authorization, { chunks: [0] })).status).toBe(404);
  });
});

describe('artifact chunks kept in an S3 bucket', () => {
  let s3: S3TestServer;
  let server: TestServer;

  beforeAll(async () => {
    s3 = await startS3Server();
    vi.stubEnv('AWS_ACCESS_KEY_ID', s3.credentials.AWS_ACCESS_KEY_ID);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', s3.credentials.AWS_SECRET_ACCESS_KEY);
    server = await startTestServer(sqliteBackend, {
      BOARDFLEET_ARTIFACT_STORE: 's3',
      BOARDFLEET_S3_ENDPOINT: s3.endpoint,
      BOARDFLEET_S3_BUCKET: s3.bucket,
      BOARDFLEET_S3_PATH_STYLE: '1',
    });
  }, 60_000);
  afterAll(async () => {
    await server?.dispose();
    await s3?.dispose();
    vi.unstubAllEnvs();
  });

  it('stores the chunks and the index in the bucket, and serves them from there', async () => {
    const content = randomBytes(MIB / 2);
    const artifact = (await uploadArtifact(server, content, {
      name: 'bucket-delta',
      version: '1.0.0',
      boards: ['rpi-4b'],
    })) as Artifact;
    expect(artifact.chunks).toMatchObject({ newBytes: content.length });
    const authorization = `Bearer ${server.adminToken}`;
    const { index: indexUrl, chunks: chunksUrl } = chunkUrls(server, artifact.id);
    const index = decodeChunkIndex(
      Buffer.from(await (await fetch(indexUrl, { headers: { authorization } })).arrayBuffer()),
    );
    expect(index.artifact.sha256).toBe(artifact.sha256);
    const response = await askChunks(chunksUrl, authorization, {
      chunks: index.chunks.map((_, i) => i).reverse(),
    });
    const expected = [...index.chunks]
      .reverse()
      .map((chunk) => content.subarray(chunk.offset, chunk.offset + chunk.length));
    expect(
      brotliDecompressSync(Buffer.from(await response.arrayBuffer())).equals(Buffer.concat(expected)),
    ).toBe(true);
  });
});
