import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import type { Logger } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactKind } from '../../protocol/manifest.ts';
import {
  applyChunkIndexDelta,
  chunkIndexSha256,
  chunkIndexSignatureValid,
  decodeChunkIndex,
} from '../../protocol/chunk-index.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { ArtifactRepository, type ArtifactRecord } from './artifact.repository.ts';
import { ArtifactService } from './artifact.service.ts';
import { FolderBlobStore } from './blob-store.repository.ts';
import { ChunkIndexRepository } from './chunk-index.repository.ts';
import { ChunkIndexService, previousIndexedVersion } from './chunk-index.service.ts';
import { LruCache } from './lru-cache.ts';
import { SigningKeyRepository } from './signing-key.repository.ts';

const MIB = 1024 * 1024;

/** `content` with `count` bytes changed in its middle: a new version where one file changed. */
function edited(content: Buffer, count = 4): Buffer {
  const copy = Buffer.from(content);
  for (let at = content.length / 2; at < content.length / 2 + count; at++)
    copy.writeUInt8(255 - copy.readUInt8(at), at);
  return copy;
}

describe('chunk indexes', () => {
  let dir: string;
  let db: Database;
  let blobs: FolderBlobStore;
  let signingKey: SigningKeyRepository;
  let logger: {
    info: ReturnType<typeof vi.fn>;
    warn: ReturnType<typeof vi.fn>;
    error: ReturnType<typeof vi.fn>;
  };
  let chunkIndexes: ChunkIndexService;
  let artifacts: ArtifactService;
  const v1 = randomBytes(MIB);

  const serviceWith = (enabled: boolean) =>
    new ChunkIndexService({
      indexes: new ChunkIndexRepository(db),
      blobs,
      signingKey,
      clock: { now: () => 1_000 },
      enabled,
      logger: logger as unknown as Logger,
    });
  const upload = async (content: Buffer, version: string, kind: ArtifactKind = 'app-bundle') =>
    (
      await artifacts.upload(
        { name: 'app', version, kind, boards: ['rpi-4b'], sha256: sha256(content), size: content.length },
        Readable.from([content]),
      )
    ).artifact;
  const describeOne = async (artifact: ArtifactRecord) => (await artifacts.describe([artifact]))[0]!;
  const indexOf = async (artifact: ArtifactRecord) =>
    buffer(await blobs.read((await describeOne(artifact)).chunks!.indexSha256));

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'boardfleet-chunks-'));
    db = openDatabase(`sqlite:${join(dir, 'test.sqlite')}`);
    await migrateToLatest(db);
    blobs = new FolderBlobStore(dir);
    signingKey = SigningKeyRepository.load(dir, null);
    logger = { info: vi.fn(), warn: vi.fn(), error: vi.fn() };
    chunkIndexes = serviceWith(true);
    artifacts = new ArtifactService(
      new ArtifactRepository(db),
      blobs,
      signingKey,
      { now: () => 1_000 },
      chunkIndexes,
    );
  });

  afterEach(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('cuts a deployable artifact into chunks stored once, with an index signed by the fleet key', async () => {
    const artifact = await upload(v1, '1.0.0');
    const bytes = await indexOf(artifact);
    const index = decodeChunkIndex(bytes);
    expect(index.artifact).toEqual({ sha256: artifact.sha256, size: v1.length });
    for (const chunk of index.chunks) {
      expect(sha256(await buffer(await blobs.read(chunk.sha256)))).toBe(chunk.sha256);
      expect(sha256(v1.subarray(chunk.offset, chunk.offset + chunk.length))).toBe(chunk.sha256);
    }
    const answer = await chunkIndexes.indexAnswer(artifact, undefined);
    expect(answer).toMatchObject({ encoding: 'full', sha256: chunkIndexSha256(bytes) });
    expect(answer.body.equals(bytes)).toBe(true);
    expect(chunkIndexSignatureValid(answer.sha256, answer.signature, signingKey.publicKeyPem)).toBe(true);
    expect((await describeOne(artifact)).chunks).toEqual({
      count: index.chunks.length,
      indexSha256: answer.sha256,
      averageBytes: Math.round(v1.length / index.chunks.length),
      newChunks: index.chunks.length,
      newBytes: v1.length,
      previousVersion: null,
      sharedPercent: null,
    });
  });

  it('does nothing new when the same artifact is uploaded again', async () => {
    const artifact = await upload(v1, '1.0.0');
    const before = await db.selectFrom('artifact_chunk_indexes').selectAll().execute();
    const write = vi.spyOn(blobs, 'write');
    await upload(v1, '1.0.0');
    // The artifact's own content, as every upload: no chunk and no index.
    expect(write.mock.calls.map(([, expected]) => expected.sha256)).toEqual([artifact.sha256]);
    expect(await db.selectFrom('artifact_chunk_indexes').selectAll().execute()).toEqual(before);
  });

  it('stores only the chunks a new version changed, and says what it shares with the previous one', async () => {
    await upload(v1, '1.0.0');
    const v2 = edited(v1);
    const second = await upload(v2, '1.1.0');
    const { chunks } = await describeOne(second);
    expect(chunks!.newChunks).toBeGreaterThan(0);
    expect(chunks!.newChunks).toBeLessThanOrEqual(3);
    expect(chunks!.newBytes).toBeLessThan(3 * 64 * 1024);
    expect(chunks).toMatchObject({ previousVersion: '1.0.0' });
    expect(chunks!.sharedPercent).toBe(Math.floor(((v2.length - chunks!.newBytes) * 1000) / v2.length) / 10);
    // The same content under another name adds nothing to the store.
    const copy = (
      await artifacts.upload(
        {
          name: 'copy',
          version: '1.0.0',
          kind: 'app-bundle',
          boards: ['rpi-4b'],
          sha256: sha256(v2),
          size: v2.length,
        },
        Readable.from([v2]),
      )
    ).artifact;
    expect((await describeOne(copy)).chunks).toMatchObject({
      newChunks: 0,
      newBytes: 0,
      previousVersion: null,
    });
  });

  it('answers the index as a delta of a base index the server holds, when that is smaller', async () => {
    const first = await upload(v1, '1.0.0');
    const second = await upload(edited(v1), '1.1.0');
    const base = await indexOf(first);
    const full = await chunkIndexes.indexAnswer(second, undefined);
    const delta = await chunkIndexes.indexAnswer(second, chunkIndexSha256(base));
    expect(delta.encoding).toBe('delta');
    expect(delta.body.length).toBeLessThan(full.body.length / 10);
    expect(chunkIndexSha256(applyChunkIndexDelta(base, delta.body))).toBe(full.sha256);
    expect(delta).toMatchObject({ sha256: full.sha256, signature: full.signature });
    // Neither an index nobody has, nor a blob that is no index (the artifact's content), is a base.
    expect((await chunkIndexes.indexAnswer(second, 'f'.repeat(64))).encoding).toBe('full');
    expect((await chunkIndexes.indexAnswer(second, first.sha256)).encoding).toBe('full');
  });

  it('answers the index whole when a delta of the base would be larger', async () => {
    const first = await upload(v1, '1.0.0');
    const other = await upload(randomBytes(MIB), '2.0.0');
    const answer = await chunkIndexes.indexAnswer(other, chunkIndexSha256(await indexOf(first)));
    expect(answer.encoding).toBe('full');
  });

  it('gives the chunks asked for, in that order, and refuses positions outside the index', async () => {
    const artifact = await upload(v1, '1.0.0');
    const { chunks } = decodeChunkIndex(await indexOf(artifact));
    const positions = [3, 0, 3, chunks.length - 1];
    const bytes = await buffer(await chunkIndexes.chunkBytes(artifact, positions));
    const expected = positions.map((position) => {
      const chunk = chunks[position]!;
      return v1.subarray(chunk.offset, chunk.offset + chunk.length);
    });
    expect(bytes.equals(Buffer.concat(expected))).toBe(true);
    await expect(chunkIndexes.chunkBytes(artifact, [0, chunks.length, chunks.length + 7])).rejects.toThrow(
      `chunk positions ${chunks.length}, ${chunks.length + 7} outside the index of artifact ${artifact.id}, which has ${chunks.length} chunks`,
    );
  });

  it('refuses a lost first chunk before answering, and ends the stream at a chunk lost later', async () => {
    const artifact = await upload(v1, '1.0.0');
    const { chunks } = decodeChunkIndex(await indexOf(artifact));
    const lost = chunks[2]!.sha256;
    rmSync(join(dir, 'artifacts', 'sha256', lost.slice(0, 2), lost));
    const refused = await chunkIndexes.chunkBytes(artifact, [2]).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(BoardfleetError);
    expect(refused).toMatchObject({ code: 'delta-unavailable' });
    const stream = await chunkIndexes.chunkBytes(artifact, [0, 1, 2]);
    await expect(buffer(stream)).rejects.toThrow(`chunk ${lost} of artifact ${artifact.id} is missing`);
  });

  it('chunks neither small nor undeployable artifacts, nor anything when delta updates are off', async () => {
    const small = await upload(randomBytes(256 * 1024 - 1), '0.1.0');
    const sbom = (
      await artifacts.upload(
        {
          name: 'sbom',
          version: '1.0.0',
          kind: 'sbom',
          boards: ['rpi-4b'],
          sha256: sha256(v1),
          size: v1.length,
        },
        Readable.from([v1]),
      )
    ).artifact;
    expect((await artifacts.describe([small, sbom])).map((artifact) => artifact.chunks)).toEqual([
      null,
      null,
    ]);
    await expect(chunkIndexes.indexAnswer(small, undefined)).rejects.toThrow(
      `artifact ${small.id} has no chunk index`,
    );

    chunkIndexes = serviceWith(false);
    artifacts = new ArtifactService(
      new ArtifactRepository(db),
      blobs,
      signingKey,
      { now: () => 1 },
      chunkIndexes,
    );
    const off = await upload(v1, '1.0.0');
    expect((await describeOne(off)).chunks).toBeNull();
    expect(await db.selectFrom('artifact_chunk_indexes').selectAll().execute()).toEqual([]);
    await expect(chunkIndexes.indexAnswer(off, undefined)).rejects.toThrow('BOARDFLEET_DELTA_UPDATES=off');
  });

  it('stores an artifact it could not chunk, logs why, and chunks it when it is uploaded again', async () => {
    const read = vi.spyOn(blobs, 'read').mockRejectedValueOnce(new Error('disk on fire'));
    const artifact = await upload(v1, '1.0.0');
    expect((await describeOne(artifact)).chunks).toBeNull();
    expect(logger.error).toHaveBeenCalledWith(
      expect.objectContaining({ artifact: artifact.id }),
      'app 1.0.0 could not be cut into chunks: devices will download it whole',
    );
    read.mockRestore();
    await upload(v1, '1.0.0');
    expect((await describeOne(artifact)).chunks).toMatchObject({ newBytes: expect.any(Number) });
  });

  it('takes the highest lower version with an index of the same name as the previous one', () => {
    const indexed = (name: string, version: string) => ({
      artifactId: `${name}-${version}`,
      name,
      version,
      indexSha256: 'a'.repeat(64),
    });
    const versions = [
      indexed('app', '1.0.0'),
      indexed('app', '1.10.0'),
      indexed('app', '1.9.0'),
      indexed('app', '2.0.0-rc.1'),
      indexed('app', '3.0.0'),
      indexed('other', '1.99.0'),
    ];
    expect(previousIndexedVersion({ name: 'app', version: '2.0.0' }, versions)?.version).toBe('2.0.0-rc.1');
    expect(previousIndexedVersion({ name: 'app', version: '1.10.0' }, versions)?.version).toBe('1.9.0');
    expect(previousIndexedVersion({ name: 'app', version: '1.0.0' }, versions)).toBeNull();
    expect(previousIndexedVersion({ name: 'new', version: '1.0.0' }, versions)).toBeNull();
  });
});

describe('the LRU cache', () => {
  it('forgets the entry used longest ago', () => {
    const cache = new LruCache<string, number>(2);
    cache.set('a', 1);
    cache.set('b', 2);
    expect(cache.get('a')).toBe(1);
    cache.set('c', 3);
    expect([cache.get('a'), cache.get('b'), cache.get('c')]).toEqual([1, undefined, 3]);
  });
});
