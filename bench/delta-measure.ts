// What one delta update costs, measured between two versions of an artifact: the bytes the
// Boardfleet protocol moves (computed from lib/content-chunks.ts and protocol/chunk-index.ts, as
// the server and the agent do), the bytes casync moves with its default chunk sizes, the size of
// a zstd --patch-from delta (a binary floor), and the time to assemble the new version from the
// old one on the device side.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants } from 'node:zlib';
import { findHostTool } from '../lib/host-tools.ts';
import { chunkFile, CHUNKER } from '../lib/content-chunks.ts';
import { sha256File } from '../lib/hash.ts';
import { CHUNK_HTTP, encodeChunkIndex, encodeChunkIndexDelta } from '../protocol/chunk-index.ts';

const exec = promisify(execFile);

/** The brotli quality of the chunks answer (DESIGN.md, "HTTP contract"). */
const CHUNKS_BROTLI_QUALITY = 5;

export interface ChunkedFile {
  path: string;
  size: number;
  /** The encoded chunk index, as the server stores it. */
  index: Buffer;
  chunks: Array<{ offset: number; length: number; sha256: string }>;
}

/** Cuts a file with the protocol's chunker and encodes its index. */
export async function chunkIndexOf(path: string): Promise<ChunkedFile> {
  const chunks: ChunkedFile['chunks'] = [];
  for await (const chunk of chunkFile(path)) {
    chunks.push({ offset: chunk.offset, length: chunk.length, sha256: chunk.sha256.toString('hex') });
  }
  const size = statSync(path).size;
  const index = encodeChunkIndex({
    chunker: CHUNKER,
    artifact: { sha256: await sha256File(path), size },
    chunks,
  });
  return { path, size, index, chunks };
}

export interface BoardfleetTransfer {
  /** Index (or index delta, when smaller) plus every compressed chunks answer. */
  bytes: number;
  indexBytes: number;
  missingChunks: number;
  missingRawBytes: number;
  /** The chunks answers' bodies, as the agent receives them, with the positions each carries. */
  requests: Array<{ positions: number[]; body: Buffer }>;
}

/**
 * What the protocol sends for `next` to a device holding `previous`: the index as a delta of
 * the previous one (or whole, when that is smaller), then the chunks the device lacks, each
 * distinct one once, in index order, ≤ 1024 to a request, each answer brotli-compressed alone.
 */
export async function boardfleetTransfer(
  previous: ChunkedFile,
  next: ChunkedFile,
): Promise<BoardfleetTransfer> {
  const indexBytes = Math.min(encodeChunkIndexDelta(previous.index, next.index).length, next.index.length);
  const held = new Set(previous.chunks.map((chunk) => chunk.sha256));
  const positions: number[] = [];
  next.chunks.forEach((chunk, position) => {
    if (held.has(chunk.sha256)) return;
    held.add(chunk.sha256);
    positions.push(position);
  });
  const file = await open(next.path, 'r');
  const requests: BoardfleetTransfer['requests'] = [];
  let missingRawBytes = 0;
  try {
    for (let first = 0; first < positions.length; first += CHUNK_HTTP.maxChunksPerRequest) {
      const batch = positions.slice(first, first + CHUNK_HTTP.maxChunksPerRequest);
      const raw = Buffer.concat(
        await Promise.all(batch.map((position) => readChunk(file, next.chunks[position]!))),
      );
      missingRawBytes += raw.length;
      const body = brotliCompressSync(raw, {
        params: {
          [zlibConstants.BROTLI_PARAM_QUALITY]: CHUNKS_BROTLI_QUALITY,
          [zlibConstants.BROTLI_PARAM_SIZE_HINT]: raw.length,
        },
      });
      requests.push({ positions: batch, body });
    }
  } finally {
    await file.close();
  }
  const bodies = requests.reduce((sum, request) => sum + request.body.length, 0);
  return {
    bytes: indexBytes + bodies,
    indexBytes,
    missingChunks: positions.length,
    missingRawBytes,
    requests,
  };
}

async function readChunk(
  file: Awaited<ReturnType<typeof open>>,
  chunk: { offset: number; length: number },
): Promise<Buffer> {
  const bytes = Buffer.alloc(chunk.length);
  const { bytesRead } = await file.read(bytes, 0, chunk.length, chunk.offset);
  if (bytesRead !== chunk.length) throw new Error(`short read at ${chunk.offset}`);
  return bytes;
}

/**
 * The device's side, in process: chunk the seed (the old version) and map its chunks by sha256,
 * decompress the answers, write the new version by copying seed chunks (re-hashing each, as the
 * agent does) and taking the fetched ones, then hash the result against the new version's.
 * Returns the seconds it took.
 */
export async function assembleLocally(
  seed: string,
  next: ChunkedFile,
  transfer: BoardfleetTransfer,
  out: string,
): Promise<number> {
  const started = performance.now();
  const seedChunks = new Map<string, { offset: number; length: number }>();
  for await (const chunk of chunkFile(seed)) {
    const sha256 = chunk.sha256.toString('hex');
    if (!seedChunks.has(sha256)) seedChunks.set(sha256, { offset: chunk.offset, length: chunk.length });
  }
  const fetched = new Map<string, Buffer>();
  for (const request of transfer.requests) {
    const body = brotliDecompressSync(request.body);
    let at = 0;
    for (const position of request.positions) {
      const chunk = next.chunks[position]!;
      fetched.set(chunk.sha256, body.subarray(at, at + chunk.length));
      at += chunk.length;
    }
  }
  const seedFile = await open(seed, 'r');
  const output = await open(out, 'w');
  const whole = createHash('sha256');
  try {
    for (const chunk of next.chunks) {
      let bytes = fetched.get(chunk.sha256);
      if (!bytes) {
        const inSeed = seedChunks.get(chunk.sha256);
        if (!inSeed) throw new Error(`chunk ${chunk.sha256} is neither in the seed nor fetched`);
        bytes = await readChunk(seedFile, inSeed);
      }
      if (createHash('sha256').update(bytes).digest('hex') !== chunk.sha256)
        throw new Error(`chunk at ${chunk.offset} does not match its sha256`);
      await output.write(bytes, 0, bytes.length, chunk.offset);
      whole.update(bytes);
    }
    await output.sync();
  } finally {
    await Promise.all([seedFile.close(), output.close()]);
  }
  if (whole.digest('hex') !== (await sha256File(next.path)))
    throw new Error(`the assembled ${out} is not ${next.path}`);
  return (performance.now() - started) / 1000;
}

/** The Debian packages that bring the peers' tools: a missing one is named in the error. */
export const PEER_TOOLS = { casync: 'casync', zstd: 'zstd' } as const;

export async function requirePeerTools(): Promise<void> {
  for (const tool of Object.keys(PEER_TOOLS) as Array<keyof typeof PEER_TOOLS>)
    await findHostTool(tool, PEER_TOOLS, process.env.PATH ?? '');
}

/**
 * What `casync extract --seed=<previous>` fetches for `next`: the chunks `casync make` adds to a
 * store that already holds the previous version's (compressed, as stored), plus the new index.
 * Also times that extraction from a local store.
 */
export async function casyncTransfer(
  previous: string,
  next: string,
  work: string,
): Promise<{ bytes: number; extractSeconds: number }> {
  rmSync(work, { recursive: true, force: true });
  const store = join(work, 'store');
  mkdirSync(store, { recursive: true });
  await exec('casync', ['make', `--store=${store}`, join(work, 'previous.caibx'), previous]);
  const before = new Set(storeChunks(store).map((chunk) => chunk.path));
  const index = join(work, 'next.caibx');
  await exec('casync', ['make', `--store=${store}`, index, next]);
  const added = storeChunks(store).filter((chunk) => !before.has(chunk.path));
  const bytes = statSync(index).size + added.reduce((sum, chunk) => sum + chunk.size, 0);
  const started = performance.now();
  await exec('casync', ['extract', `--store=${store}`, `--seed=${previous}`, index, join(work, 'extracted')]);
  const extractSeconds = (performance.now() - started) / 1000;
  rmSync(work, { recursive: true, force: true });
  return { bytes, extractSeconds };
}

function storeChunks(store: string): Array<{ path: string; size: number }> {
  return readdirSync(store, { recursive: true })
    .map(String)
    .filter((path) => path.endsWith('.cacnk'))
    .map((path) => ({ path, size: statSync(join(store, path)).size }));
}

/** The size of `zstd -19 --patch-from=<previous>` for `next`, its window opened to cover both. */
export async function zstdPatchBytes(previous: string, next: string, out: string): Promise<number> {
  const largest = Math.max(statSync(previous).size, statSync(next).size);
  const windowLog = Math.max(10, Math.ceil(Math.log2(largest)) + 1);
  await exec('zstd', ['-q', '-f', '-19', `--long=${windowLog}`, `--patch-from=${previous}`, next, '-o', out]);
  const bytes = statSync(out).size;
  rmSync(out, { force: true });
  return bytes;
}
