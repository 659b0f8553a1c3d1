import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { type FileHandle, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkFile } from '../../lib/content-chunks.ts';
import { sha256File } from '../../lib/hash.ts';
import { type ChunkIndex, type ChunkIndexEntry, decodeChunkIndex } from '../../protocol/chunk-index.ts';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import { isTransient } from './artifact-download.ts';
import { type ByteMeter, type ChunkEndpoint, fetchChunks, fetchSignedChunkIndex } from './delta-http.ts';
import type { SignedChunkIndex } from './fleet-metadata.ts';
import type { SeedSource } from './update-seeds.ts';

/** The files of one artifact's download in `<data dir>/downloads`, all named by its sha256. */
export function downloadFiles(downloads: string, sha256: string) {
  const at = (suffix: string) => join(downloads, `${sha256}.${suffix}`);
  return {
    /** The complete, verified artifact: what a full download writes and an assembly ends as. */
    artifact: at('artifact'),
    /** The artifact being assembled, and the positions of the chunks in it that are written and synced. */
    assembling: at('assembling'),
    journal: at('assembling.done'),
    /** The artifact's verified chunk index, kept as the next update's `?base=` once committed. */
    index: at('chunk-index'),
    /** How the artifact came (see artifact-transfer.ts). */
    transfer: at('transfer.json'),
  };
}

/** Where an assembly stands, for the fault-injection hook (a test stops the agent at each). */
export type AssemblyStep = 'index' | 'seeds' | 'copied' | 'fetched-batch' | 'verified';

export interface DeltaAssemblyRequest extends ChunkEndpoint {
  /** The artifact as the signed manifest names it. */
  artifact: { sha256: string; size: number };
  fleetPublicKeyPem: string;
  downloads: string;
  seeds: SeedSource[];
  /** The chunk index of the version the device runs, if it kept one. */
  baseIndex: Buffer | null;
  /** With TUF: the chunk index the fleet's targets metadata signs (null: none, so no delta). */
  signedChunkIndex?: SignedChunkIndex | null;
  onProgress?: (placed: number, total: number) => void;
  /** Test hook: called as each step is done (fault injection). */
  onStep?: (step: AssemblyStep) => void;
  /** Per chunk request: at most this many bytes and chunks; this many requests at once. */
  batchBytes?: number;
  batchChunks?: number;
  parallelRequests?: number;
}

/** The result of an assembly: the chunks it reused, and those it fetched. */
export interface AssemblyStats {
  chunks: number;
  copiedChunks: number;
  copiedBytes: number;
  fetchedChunks: number;
  /** Chunks written before this run (a resumed assembly). */
  resumedChunks: number;
}

const COPY_SYNC_BYTES = 8 * 1024 * 1024;

/**
 * Builds an artifact from what the device has and the chunks it lacks (see DESIGN: delta
 * updates). The chunk index must be signed by the fleet key and name the signed artifact; each
 * chunk, read from a seed or fetched, is hashed before it is written; and the whole result must
 * have the signed sha256 and size before it is renamed to where a full download would have put
 * it. A journal of the written chunks lets a killed agent resume without fetching them again.
 *
 * Failures: a transient one (the network, the server's 5xx) keeps what was written, so that a
 * retry resumes; any other removes the partial file and journal, and the caller downloads the
 * artifact whole. Nothing outside `downloads` is ever written.
 */
export class DeltaAssembler {
  private readonly meter: ByteMeter = { bytes: 0 };
  private readonly files: ReturnType<typeof downloadFiles>;

  constructor(private readonly request: DeltaAssemblyRequest) {
    this.files = downloadFiles(request.downloads, request.artifact.sha256);
  }

  /** Bytes that crossed the network so far, over every attempt: index answers and chunk bodies. */
  get bytes(): number {
    return this.meter.bytes;
  }

  async assemble(): Promise<AssemblyStats> {
    try {
      return await this.run();
    } catch (error) {
      if (!this.request.signal.aborted && !isTransient(error)) discardAssembly(this.files);
      throw error;
    }
  }

  private async run(): Promise<AssemblyStats> {
    const { signal } = this.request;
    const index = await this.chunkIndex();
    this.step('index');
    const output = await AssemblyFile.open(this.files, index);
    try {
      const stats: AssemblyStats = {
        chunks: index.chunks.length,
        copiedChunks: 0,
        copiedBytes: 0,
        fetchedChunks: 0,
        resumedChunks: output.written.size,
      };
      this.progress(output, index);
      const wanted = index.chunks.filter((_, position) => !output.written.has(position));
      if (wanted.length > 0) {
        const found = await this.chunkSeeds(index, wanted);
        this.step('seeds');
        const missing = await this.copyFromSeeds(output, index, found, stats);
        if (stats.copiedChunks === 0 && stats.resumedChunks === 0)
          throw new BoardfleetError(
            'delta-unavailable',
            `none of the ${this.request.seeds.length} seed(s) on this device holds a chunk of the new version`,
          );
        this.step('copied');
        await this.fetchMissing(output, index, missing, stats);
      }
      signal.throwIfAborted();
      await output.close();
      const { size, sha256 } = this.request.artifact;
      const actual = await sha256File(this.files.assembling);
      if (actual !== sha256)
        throw new BoardfleetError(
          'chunk-mismatch',
          `the assembled artifact has sha256 ${actual}; the signed manifest says ${sha256} (${size} bytes)`,
        );
      this.step('verified');
      await local(`renaming ${this.files.assembling}`, async () => {
        renameSync(this.files.assembling, this.files.artifact);
        rmSync(this.files.journal, { force: true });
      });
      return stats;
    } finally {
      await output.close();
    }
  }

  /** The index this assembly verified before (a resumed one), or a fresh one from the server. */
  private async chunkIndex(): Promise<ChunkIndex> {
    const { artifact } = this.request;
    const saved = savedIndex(this.files.index);
    if (saved?.artifact.sha256 === artifact.sha256 && saved.artifact.size === artifact.size) return saved;
    const { index, bytes } = await fetchSignedChunkIndex(this.request, {
      base: this.request.baseIndex,
      artifact,
      fleetPublicKeyPem: this.request.fleetPublicKeyPem,
      meter: this.meter,
      ...(this.request.signedChunkIndex === undefined
        ? {}
        : { signedByTargets: this.request.signedChunkIndex }),
    });
    await local(`saving ${this.files.index}`, async () => {
      await writeFile(`${this.files.index}.tmp`, bytes);
      renameSync(`${this.files.index}.tmp`, this.files.index);
    });
    return index;
  }

  /** Where each wanted chunk lies in the seeds (the first place found); an unreadable seed is skipped. */
  private async chunkSeeds(index: ChunkIndex, wanted: ChunkIndexEntry[]): Promise<Map<string, SeedSource>> {
    const needed = new Set(wanted.map((chunk) => chunk.sha256));
    const found = new Map<string, SeedSource>();
    for (const seed of this.request.seeds) {
      try {
        for await (const chunk of chunkFile(seed.path, seed, index.chunker)) {
          this.request.signal.throwIfAborted();
          const sha256 = chunk.sha256.toString('hex');
          if (needed.has(sha256) && !found.has(sha256))
            found.set(sha256, { path: seed.path, start: seed.start + chunk.offset, length: chunk.length });
        }
      } catch (error) {
        if (this.request.signal.aborted) throw error;
        // A seed that went away is no reason to give up: its chunks are fetched instead.
      }
    }
    return found;
  }

  /** Copies every wanted chunk a seed holds (re-hashed as read); returns the positions still missing. */
  private async copyFromSeeds(
    output: AssemblyFile,
    index: ChunkIndex,
    found: Map<string, SeedSource>,
    stats: AssemblyStats,
  ): Promise<number[]> {
    const missing: number[] = [];
    const seeds = new Map<string, FileHandle | null>();
    let unsynced: number[] = [];
    let unsyncedBytes = 0;
    try {
      for (const [position, chunk] of index.chunks.entries()) {
        if (output.written.has(position)) continue;
        this.request.signal.throwIfAborted();
        const bytes = await readSeed(seeds, found.get(chunk.sha256));
        if (!bytes || createHash('sha256').update(bytes).digest('hex') !== chunk.sha256) {
          // Not in any seed, or the seed changed since it was chunked.
          missing.push(position);
          continue;
        }
        await output.write(chunk, bytes);
        unsynced.push(position);
        unsyncedBytes += bytes.length;
        stats.copiedChunks++;
        stats.copiedBytes += bytes.length;
        if (unsyncedBytes >= COPY_SYNC_BYTES) {
          await output.commit(unsynced);
          unsynced = [];
          unsyncedBytes = 0;
          this.progress(output, index);
        }
      }
      await output.commit(unsynced);
      this.progress(output, index);
      return missing;
    } finally {
      for (const handle of seeds.values()) await handle?.close();
    }
  }

  /**
   * Fetches the missing chunks, each distinct one once, in batches with several requests at
   * once. A chunk that does not arrive intact is asked for once more (alone, when it arrived
   * with the wrong sha256); a second failure gives the delta up.
   */
  private async fetchMissing(
    output: AssemblyFile,
    index: ChunkIndex,
    missing: number[],
    stats: AssemblyStats,
  ): Promise<void> {
    const positionsOf = new Map<string, number[]>();
    for (const position of missing) {
      const sha256 = (index.chunks[position] as ChunkIndexEntry).sha256;
      positionsOf.set(sha256, [...(positionsOf.get(sha256) ?? []), position]);
    }
    const distinct = [...positionsOf.values()].map((positions) => positions[0] as number);
    const batches = this.batches(index, distinct);
    const failure = new AbortController();
    const worker = async () => {
      for (let batch = batches.shift(); batch && !failure.signal.aborted; batch = batches.shift()) {
        const failed = await this.fetchBatch(output, index, batch, positionsOf, stats);
        const retries = [
          ...failed.corrupt.map((position) => [position]),
          ...this.batches(index, failed.lost),
        ];
        for (const retry of retries) {
          const again = await this.fetchBatch(output, index, retry, positionsOf, stats);
          const [first] = [...again.corrupt, ...again.lost];
          if (first !== undefined) {
            const chunk = index.chunks[first] as ChunkIndexEntry;
            throw new BoardfleetError(
              'chunk-mismatch',
              `chunk ${first} (${chunk.sha256}, ${chunk.length} bytes at ${chunk.offset}) did not arrive intact twice: ${again.why}`,
            );
          }
        }
      }
    };
    const workers = Array.from({ length: this.request.parallelRequests ?? 3 }, () =>
      worker().catch((error: unknown) => {
        failure.abort();
        throw error;
      }),
    );
    const settled = await Promise.allSettled(workers);
    const rejected = settled.find((result) => result.status === 'rejected');
    if (rejected) throw rejected.reason;
  }

  /** One request: writes and journals every chunk that arrived intact; returns the others. */
  private async fetchBatch(
    output: AssemblyFile,
    index: ChunkIndex,
    batch: number[],
    positionsOf: Map<string, number[]>,
    stats: AssemblyStats,
  ): Promise<{ corrupt: number[]; lost: number[]; why: string }> {
    const chunks = batch.map((position) => index.chunks[position] as ChunkIndexEntry);
    const expected = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    const answer = await fetchChunks(this.request, batch, expected, this.meter);
    const corrupt: number[] = [];
    const lost: number[] = [];
    const written: number[] = [];
    let at = 0;
    for (const [n, chunk] of chunks.entries()) {
      const bytes = answer.bytes.subarray(at, at + chunk.length);
      at += chunk.length;
      const position = batch[n] as number;
      if (bytes.length < chunk.length) lost.push(position);
      else if (createHash('sha256').update(bytes).digest('hex') !== chunk.sha256) corrupt.push(position);
      else
        for (const same of positionsOf.get(chunk.sha256) ?? [position]) {
          await output.write(index.chunks[same] as ChunkIndexEntry, bytes);
          written.push(same);
        }
    }
    await output.commit(written);
    stats.fetchedChunks += chunks.length - corrupt.length - lost.length;
    this.progress(output, index);
    this.step('fetched-batch');
    const why =
      corrupt.length > 0
        ? `it arrived with another sha256${answer.broken ? `; ${answer.broken}` : ''}`
        : (answer.broken ?? 'it did not arrive');
    return { corrupt, lost, why };
  }

  /** Positions grouped in index order into requests of bounded bytes and count. */
  private batches(index: ChunkIndex, positions: number[]): number[][] {
    const maxBytes = this.request.batchBytes ?? 1024 * 1024;
    const maxChunks = this.request.batchChunks ?? 256;
    const batches: number[][] = [];
    let current: number[] = [];
    let bytes = 0;
    for (const position of [...positions].sort((a, b) => a - b)) {
      const length = (index.chunks[position] as ChunkIndexEntry).length;
      if (current.length > 0 && (current.length >= maxChunks || bytes + length > maxBytes)) {
        batches.push(current);
        current = [];
        bytes = 0;
      }
      current.push(position);
      bytes += length;
    }
    if (current.length > 0) batches.push(current);
    return batches;
  }

  private progress(output: AssemblyFile, index: ChunkIndex): void {
    let placed = 0;
    for (const position of output.written) placed += (index.chunks[position] as ChunkIndexEntry).length;
    this.request.onProgress?.(placed, index.artifact.size);
  }

  private step(step: AssemblyStep): void {
    this.request.onStep?.(step);
    this.request.signal.throwIfAborted();
  }
}

/** The index an earlier run of this assembly verified and saved; null when there is none or it is torn. */
function savedIndex(path: string): ChunkIndex | null {
  try {
    return existsSync(path) ? decodeChunkIndex(readFileSync(path)) : null;
  } catch {
    return null;
  }
}

/** Removes a partial assembly and its journal (a full download follows, or the deployment ends). */
export function discardAssembly(files: ReturnType<typeof downloadFiles>): void {
  rmSync(files.assembling, { force: true });
  rmSync(files.journal, { force: true });
}

/** Removes every file of one artifact's download: the next attempt starts clean. */
export function discardDownload(files: ReturnType<typeof downloadFiles>): void {
  for (const file of Object.values(files)) rmSync(file, { force: true });
}

/** The bytes of a chunk in a seed, or null when there is none or the seed cannot be read any more. */
async function readSeed(
  handles: Map<string, FileHandle | null>,
  location: SeedSource | undefined,
): Promise<Buffer | null> {
  if (!location) return null;
  if (!handles.has(location.path))
    handles.set(location.path, await open(location.path, 'r').catch(() => null));
  const handle = handles.get(location.path);
  if (!handle) return null;
  const bytes = Buffer.alloc(location.length);
  try {
    const { bytesRead } = await handle.read(bytes, 0, location.length, location.start);
    return bytesRead === location.length ? bytes : null;
  } catch {
    return null;
  }
}

/**
 * The file being assembled and its journal: u32 (big-endian) positions of chunks that are
 * written and synced. A journal entry is appended only after the file was synced, so a resumed
 * assembly trusts it; a torn last entry is ignored.
 */
class AssemblyFile {
  private closed = false;
  /** Journal appends, one after the other. */
  private journaling: Promise<void> = Promise.resolve();

  private constructor(
    private readonly handle: FileHandle,
    private readonly journal: FileHandle,
    private readonly path: string,
    readonly written: Set<number>,
  ) {}

  static async open(files: ReturnType<typeof downloadFiles>, index: ChunkIndex): Promise<AssemblyFile> {
    const written = new Set<number>();
    const resuming = existsSync(files.assembling) && existsSync(files.journal);
    if (resuming) {
      const journal = readFileSync(files.journal);
      for (let at = 0; at + 4 <= journal.length; at += 4) {
        const position = journal.readUInt32BE(at);
        if (position < index.chunks.length) written.add(position);
      }
    }
    return local(`opening ${files.assembling}`, async () => {
      const handle = await open(files.assembling, resuming ? 'r+' : 'w');
      // A fresh journal starts empty (a torn entry would otherwise shift every later one).
      const journal = await open(files.journal, resuming ? 'a' : 'w');
      if (resuming) await journal.truncate(Math.floor((await journal.stat()).size / 4) * 4);
      return new AssemblyFile(handle, journal, files.assembling, written);
    });
  }

  write(chunk: ChunkIndexEntry, bytes: Buffer): Promise<void> {
    return local(`writing ${this.path}`, async () => {
      for (let done = 0; done < bytes.length;) {
        const { bytesWritten } = await this.handle.write(
          bytes,
          done,
          bytes.length - done,
          chunk.offset + done,
        );
        done += bytesWritten;
      }
    });
  }

  /** Syncs what was written, then journals these positions (and syncs the journal). */
  commit(positions: number[]): Promise<void> {
    if (positions.length === 0) return Promise.resolve();
    const entries = Buffer.alloc(positions.length * 4);
    positions.forEach((position, n) => entries.writeUInt32BE(position, n * 4));
    const appended = this.journaling.then(() =>
      local(`journaling ${this.path}`, async () => {
        await this.handle.datasync();
        await this.journal.write(entries);
        await this.journal.datasync();
        for (const position of positions) this.written.add(position);
      }),
    );
    this.journaling = appended.catch(() => undefined);
    return appended;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.journaling;
    await this.handle.close();
    await this.journal.close();
  }
}

/** A local file error (the disk full, say) as a refusal that names the file: never worth a retry. */
async function local<T>(what: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (isBoardfleetError(error)) throw error;
    throw new BoardfleetError('download-failed', `${what} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
