import { buffer } from 'node:stream/consumers';
import type { Logger } from 'pino';
import semver from 'semver';
import { CHUNKER, chunkStream } from '../../lib/content-chunks.ts';
import { type ArtifactChunks, CHUNKED_ARTIFACT_MIN_BYTES } from '../../protocol/api/artifacts.ts';
import {
  type ChunkIndex,
  type ChunkIndexEntry,
  chunkIndexSha256,
  chunkIndexStatement,
  decodeChunkIndex,
  encodeChunkIndex,
  encodeChunkIndexDelta,
} from '../../protocol/chunk-index.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { isDeployableKind } from '../../protocol/manifest.ts';
import type { Clock } from '../common/clock.ts';
import { invalidRequest } from '../common/errors.ts';
import type { ArtifactRecord } from './artifact.repository.ts';
import type { BlobStore } from './blob-store.ts';
import type { ChunkIndexRepository, ChunkIndexRow, IndexedVersion } from './chunk-index.repository.ts';
import { LruCache } from './lru-cache.ts';
import type { SigningKeyRepository } from './signing-key.repository.ts';

/**
 * Chunks stored at once while an artifact is cut: cutting and hashing 70 MB takes a fraction of
 * a second, creating its ~4,000 chunk files is what takes time, and the disk overlaps them.
 */
const PARALLEL_CHUNK_WRITES = 8;
/** Parsed indexes kept: a rollout has every device ask for the same one or two. */
const CACHED_INDEXES = 16;
/** Deltas kept, by base and target: the devices of a rollout mostly run the same base. */
const CACHED_DELTAS = 16;
/** Shares between an index and its previous version's: a number each, and never changing. */
const CACHED_SHARES = 1024;

export interface ChunkIndexServiceOptions {
  indexes: ChunkIndexRepository;
  blobs: BlobStore;
  signingKey: SigningKeyRepository;
  clock: Clock;
  /** BOARDFLEET_DELTA_UPDATES: off chunks nothing and serves no index. */
  enabled: boolean;
  logger: Logger;
}

/** What `GET …/chunk-index` answers: the full index, or a delta of the base the caller named. */
export interface ChunkIndexAnswer {
  /** The full index's sha256 and its signature, whatever the body is. */
  sha256: string;
  signature: string;
  encoding: 'full' | 'delta';
  body: Buffer;
}

interface LoadedIndex {
  bytes: Buffer;
  index: ChunkIndex;
}

/**
 * Chunk indexes for delta updates: made when a deployable artifact is uploaded (its chunks are
 * stored once each in the artifact store, shared across artifacts and versions), served to
 * devices with the chunks they lack, and summed up for operators.
 */
export class ChunkIndexService {
  private readonly loaded = new LruCache<string, Promise<LoadedIndex>>(CACHED_INDEXES);
  private readonly deltas = new LruCache<string, Buffer | null>(CACHED_DELTAS);
  private readonly shares = new LruCache<string, number>(CACHED_SHARES);

  constructor(private readonly options: ChunkIndexServiceOptions) {}

  /**
   * Cuts a stored artifact into chunks and records its signed index, unless it has one already,
   * is not deployable, or is too small to gain from a delta. A failure is logged, not thrown:
   * the artifact is stored either way, devices then download it whole, and uploading it again
   * tries once more.
   */
  async indexArtifact(artifact: ArtifactRecord): Promise<void> {
    if (
      !this.options.enabled ||
      !isDeployableKind(artifact.kind) ||
      artifact.size < CHUNKED_ARTIFACT_MIN_BYTES
    )
      return;
    if (await this.options.indexes.get(artifact.id)) return;
    const started = performance.now();
    try {
      const row = await this.makeIndex(artifact);
      this.options.logger.info(
        {
          artifact: artifact.id,
          chunks: row.chunk_count,
          newChunks: row.new_chunk_count,
          newBytes: row.new_chunk_bytes,
          ms: Math.round(performance.now() - started),
        },
        `${artifact.name} ${artifact.version} cut into ${row.chunk_count} chunks for delta updates`,
      );
    } catch (error) {
      this.options.logger.error(
        { err: error, artifact: artifact.id },
        `${artifact.name} ${artifact.version} could not be cut into chunks: devices will download it whole`,
      );
    }
  }

  private async makeIndex(artifact: ArtifactRecord): Promise<ChunkIndexRow> {
    const { blobs } = this.options;
    const chunks: ChunkIndexEntry[] = [];
    const seen = new Set<string>();
    let newChunks = 0;
    let newBytes = 0;
    const content = await blobs.read(artifact.sha256);
    async function* indexed() {
      for await (const chunk of chunkStream(content)) {
        const sha256 = chunk.sha256.toString('hex');
        chunks.push({ offset: chunk.offset, length: chunk.length, sha256 });
        // A chunk that repeats within the artifact (zeroed blocks) is stored, and counted, once.
        if (seen.has(sha256)) continue;
        seen.add(sha256);
        yield { sha256, bytes: chunk.bytes };
      }
    }
    await forEachAtMost(indexed(), PARALLEL_CHUNK_WRITES, async ({ sha256, bytes }) => {
      if (await this.storeOnce(sha256, bytes)) {
        newChunks++;
        newBytes += bytes.length;
      }
    });
    const index: ChunkIndex = {
      chunker: { ...CHUNKER },
      artifact: { sha256: artifact.sha256, size: artifact.size },
      chunks,
    };
    const bytes = encodeChunkIndex(index);
    const indexSha256 = chunkIndexSha256(bytes);
    await this.storeOnce(indexSha256, bytes);
    const row: ChunkIndexRow = {
      artifact_id: artifact.id,
      index_sha256: indexSha256,
      index_size: bytes.length,
      signature: this.options.signingKey.sign(chunkIndexStatement(indexSha256)),
      chunk_count: chunks.length,
      new_chunk_count: newChunks,
      new_chunk_bytes: newBytes,
      created_at: this.options.clock.now(),
    };
    await this.options.indexes.insert(row);
    this.loaded.set(indexSha256, Promise.resolve({ bytes, index }));
    return row;
  }

  /** Stores a blob the store lacks; true when this call stored it. */
  private async storeOnce(sha256: string, bytes: Buffer): Promise<boolean> {
    if (await this.options.blobs.has(sha256)) return false;
    return (await this.options.blobs.writeBytes(bytes, sha256)).stored;
  }

  /**
   * The artifact's index, signed; as a delta of `base` when the server holds that index (any
   * artifact's) and the delta is the smaller answer.
   */
  async indexAnswer(artifact: ArtifactRecord, base: string | undefined): Promise<ChunkIndexAnswer> {
    const row = await this.rowOrThrow(artifact);
    const target = await this.load(row.index_sha256);
    const full = { sha256: row.index_sha256, signature: row.signature, body: target.bytes };
    const delta = base === undefined ? null : await this.deltaOf(base, row.index_sha256, target.bytes);
    return delta ? { ...full, encoding: 'delta', body: delta } : { ...full, encoding: 'full' };
  }

  private async deltaOf(base: string, target: string, targetBytes: Buffer): Promise<Buffer | null> {
    const key = `${base}>${target}`;
    const cached = this.deltas.get(key);
    if (cached !== undefined) return cached;
    // Only an index may be read as a base: any other blob could be a whole artifact.
    if (!(await this.options.indexes.isIndex(base))) return null;
    const delta = encodeChunkIndexDelta((await this.load(base)).bytes, targetBytes);
    const smaller = delta.length < targetBytes.length ? delta : null;
    this.deltas.set(key, smaller);
    return smaller;
  }

  /**
   * The bytes of the chunks at these positions of the artifact's index, in the order asked.
   * Refuses positions outside the index, and a first chunk the store has lost, before anything
   * is answered; a chunk lost or changed further on ends the stream with an error.
   */
  async chunkBytes(artifact: ArtifactRecord, positions: number[]): Promise<AsyncGenerator<Buffer>> {
    const { index } = await this.load((await this.rowOrThrow(artifact)).index_sha256);
    const outside = positions.filter((position) => position >= index.chunks.length);
    if (outside.length > 0)
      throw invalidRequest(
        `chunk position${outside.length > 1 ? 's' : ''} ${outside.slice(0, 5).join(', ')}${outside.length > 5 ? ', …' : ''} ` +
          `outside the index of artifact ${artifact.id}, which has ${index.chunks.length} chunks (0 to ${index.chunks.length - 1})`,
      );
    const wanted = positions.map((position) => index.chunks[position] as ChunkIndexEntry);
    if (!(await this.options.blobs.has(wanted[0]!.sha256))) throw lostChunk(artifact, wanted[0]!);
    return this.readChunks(artifact, wanted);
  }

  private async *readChunks(artifact: ArtifactRecord, chunks: ChunkIndexEntry[]): AsyncGenerator<Buffer> {
    for (const chunk of chunks) {
      const stream = await this.options.blobs.read(chunk.sha256).catch((error: unknown) => {
        throw error instanceof BoardfleetError && error.code === 'not-found'
          ? lostChunk(artifact, chunk)
          : error;
      });
      let length = 0;
      for await (const piece of stream as AsyncIterable<Buffer>) {
        length += piece.length;
        yield piece;
      }
      if (length !== chunk.length)
        throw new BoardfleetError(
          'chunk-mismatch',
          `chunk ${chunk.sha256} of artifact ${artifact.id} is ${length} bytes in the store, not ${chunk.length}`,
        );
    }
  }

  /** What operators see of each artifact's chunk index, by artifact id; none for those without. */
  async summaries(artifacts: ArtifactRecord[]): Promise<Map<string, ArtifactChunks>> {
    const summaries = new Map<string, ArtifactChunks>();
    if (!this.options.enabled) return summaries;
    const rows = new Map(
      (await this.options.indexes.getMany(artifacts.map((artifact) => artifact.id))).map((row) => [
        row.artifact_id,
        row,
      ]),
    );
    const chunked = artifacts.filter((artifact) => rows.has(artifact.id));
    const versions = await this.options.indexes.indexedVersions([
      ...new Set(chunked.map((artifact) => artifact.name)),
    ]);
    for (const artifact of chunked) {
      const row = rows.get(artifact.id) as ChunkIndexRow;
      const previous = previousIndexedVersion(artifact, versions);
      summaries.set(artifact.id, {
        count: row.chunk_count,
        indexSha256: row.index_sha256,
        averageBytes: Math.round(artifact.size / row.chunk_count),
        newChunks: row.new_chunk_count,
        newBytes: row.new_chunk_bytes,
        previousVersion: previous?.version ?? null,
        sharedPercent: previous ? await this.sharedPercent(row.index_sha256, previous.indexSha256) : null,
      });
    }
    return summaries;
  }

  /** The share of the target's bytes in chunks the base has, rounded down to 0.1 %; null when unreadable. */
  private async sharedPercent(target: string, base: string): Promise<number | null> {
    const key = `${base}>${target}`;
    const cached = this.shares.get(key);
    if (cached !== undefined) return cached;
    try {
      const [{ index }, { index: baseIndex }] = await Promise.all([this.load(target), this.load(base)]);
      const baseChunks = new Set(baseIndex.chunks.map((chunk) => chunk.sha256));
      let shared = 0;
      for (const chunk of index.chunks) if (baseChunks.has(chunk.sha256)) shared += chunk.length;
      const percent = Math.floor((shared * 1000) / index.artifact.size) / 10;
      this.shares.set(key, percent);
      return percent;
    } catch (error) {
      // A detail for operators: the artifact is still answered without it.
      this.options.logger.warn({ err: error, index: target, base }, 'comparing chunk indexes failed');
      return null;
    }
  }

  private async rowOrThrow(artifact: ArtifactRecord): Promise<ChunkIndexRow> {
    const row = this.options.enabled ? await this.options.indexes.get(artifact.id) : null;
    if (!row)
      throw new BoardfleetError(
        'not-found',
        this.options.enabled
          ? `artifact ${artifact.id} has no chunk index: download its content whole`
          : 'delta updates are off on this server (BOARDFLEET_DELTA_UPDATES=off): download the content whole',
      );
    return row;
  }

  /** A stored index, parsed once and kept while it is among the most used. */
  private load(indexSha256: string): Promise<LoadedIndex> {
    const cached = this.loaded.get(indexSha256);
    if (cached) return cached;
    const loading = this.readIndex(indexSha256);
    this.loaded.set(indexSha256, loading);
    // A failed read is not kept: the next request tries again.
    loading.catch(() => this.loaded.delete(indexSha256));
    return loading;
  }

  private async readIndex(indexSha256: string): Promise<LoadedIndex> {
    const stream = await this.options.blobs.read(indexSha256).catch((error: unknown) => {
      if (error instanceof BoardfleetError && error.code === 'not-found')
        throw new BoardfleetError(
          'delta-unavailable',
          `the chunk index ${indexSha256} is missing from the artifact store`,
        );
      throw error;
    });
    const bytes = await buffer(stream);
    if (chunkIndexSha256(bytes) !== indexSha256)
      throw new BoardfleetError(
        'chunk-index-invalid',
        `the stored chunk index ${indexSha256} has other content`,
      );
    return { bytes, index: decodeChunkIndex(bytes) };
  }
}

/** The highest version of the artifact's name below its own that has a chunk index. */
export function previousIndexedVersion(
  artifact: Pick<ArtifactRecord, 'name' | 'version'>,
  versions: IndexedVersion[],
): IndexedVersion | null {
  let previous: IndexedVersion | null = null;
  for (const candidate of versions) {
    if (candidate.name !== artifact.name || !semver.lt(candidate.version, artifact.version)) continue;
    if (!previous || semver.gt(candidate.version, previous.version)) previous = candidate;
  }
  return previous;
}

function lostChunk(artifact: ArtifactRecord, chunk: ChunkIndexEntry): BoardfleetError {
  return new BoardfleetError(
    'delta-unavailable',
    `chunk ${chunk.sha256} of artifact ${artifact.id} is missing from the artifact store`,
  );
}

/**
 * Runs `work` on each item as the items arrive, at most `limit` at once, and waits for all of
 * them; the first failure stops taking items and is thrown once the running ones have ended.
 */
async function forEachAtMost<T>(
  items: AsyncIterable<T>,
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  const running = new Set<Promise<void>>();
  const failures: unknown[] = [];
  try {
    for await (const item of items) {
      if (failures.length > 0) break;
      const task: Promise<void> = work(item)
        .catch((error: unknown) => {
          failures.push(error);
        })
        .finally(() => running.delete(task));
      running.add(task);
      if (running.size >= limit) await Promise.race(running);
    }
  } finally {
    await Promise.all(running);
  }
  if (failures.length > 0) throw failures[0];
}
