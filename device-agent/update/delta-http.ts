import { pipeline } from 'node:stream/promises';
import { createBrotliDecompress } from 'node:zlib';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { SignedChunkIndex } from './fleet-metadata.ts';
import {
  applyChunkIndexDelta,
  CHUNK_ENTRY_BYTES,
  CHUNK_HTTP,
  CHUNK_INDEX_HEADER_BYTES,
  type ChunkIndex,
  chunkIndexSha256,
  chunkIndexSignatureValid,
  type ChunkRequest,
  decodeChunkIndex,
} from '../../protocol/chunk-index.ts';

/** How the agent reaches an artifact's chunk endpoints (beside its content URL). */
export interface ChunkEndpoint {
  /** The deployment's content URL, absolute: `…/api/v1/artifacts/<id>/content`. */
  contentUrl: string;
  /** The agent's verifying fetch (see server-trust.ts); default: the global one. */
  fetch?: typeof fetch;
  auth: { deviceId: string; secret: string };
  signal: AbortSignal;
}

/** Counts the bytes that crossed the network: answer bodies as they arrived, compressed. */
export interface ByteMeter {
  bytes: number;
}

/**
 * Chunks no smaller than this are assumed when bounding an index answer before it is checked
 * (the fleet's chunker cuts at 4 KiB at least).
 */
const SMALLEST_CHUNK = 1024;

const authorization = (endpoint: ChunkEndpoint) =>
  `Basic ${Buffer.from(`${endpoint.auth.deviceId}:${endpoint.auth.secret}`).toString('base64')}`;

/** A failed answer: the server's own trouble passes (transient), anything else rules the delta out. */
function refused(response: Response, what: string): BoardfleetError {
  if (response.status >= 500)
    return new BoardfleetError('unavailable', `${what} failed: HTTP ${response.status}`);
  return new BoardfleetError(
    'delta-unavailable',
    response.status === 404
      ? `the server has no chunk index for this artifact (${what}: HTTP 404)`
      : `${what} failed: HTTP ${response.status}`,
  );
}

/**
 * Fetches the artifact's chunk index (as a delta of `base` when the server can) and accepts it
 * only when the fleet key signs it and it names the artifact the signed manifest names. Returns
 * the full index, its bytes (kept as the next update's base) and its sha256.
 */
export async function fetchSignedChunkIndex(
  endpoint: ChunkEndpoint,
  options: {
    base: Buffer | null;
    artifact: { sha256: string; size: number };
    fleetPublicKeyPem: string;
    meter: ByteMeter;
    /** With TUF: the index targets signs for the artifact (null: none); checked before anything is fetched. */
    signedByTargets?: SignedChunkIndex | null;
  },
): Promise<{ index: ChunkIndex; bytes: Buffer }> {
  if (options.signedByTargets === null)
    throw new BoardfleetError(
      'delta-unavailable',
      "the fleet's TUF targets list no chunk index for this artifact (yet)",
    );
  const url = new URL(CHUNK_HTTP.indexPath, endpoint.contentUrl);
  if (options.base) url.searchParams.set(CHUNK_HTTP.baseQuery, chunkIndexSha256(options.base));
  const response = await (endpoint.fetch ?? fetch)(url, {
    headers: { authorization: authorization(endpoint) },
    signal: endpoint.signal,
  });
  if (response.status !== 200 || !response.body) throw refused(response, `GET ${url.pathname}`);
  const limit =
    CHUNK_INDEX_HEADER_BYTES + CHUNK_ENTRY_BYTES * (Math.ceil(options.artifact.size / SMALLEST_CHUNK) + 1);
  const body = await readLimited(response.body, limit, options.meter);
  const invalid = (why: string) => new BoardfleetError('chunk-index-invalid', `the chunk index ${why}`);
  const encoding = response.headers.get(CHUNK_HTTP.encodingHeader) ?? 'full';
  if (encoding === 'delta' && !options.base) throw invalid('came as a delta of an index this device lacks');
  if (encoding !== 'full' && encoding !== 'delta') throw invalid(`came in an unknown encoding "${encoding}"`);
  const bytes = encoding === 'delta' ? applyChunkIndexDelta(options.base as Buffer, body) : body;
  const sha256 = chunkIndexSha256(bytes);
  if (sha256 !== response.headers.get(CHUNK_HTTP.sha256Header))
    throw invalid(`has sha256 ${sha256}; the server says ${response.headers.get(CHUNK_HTTP.sha256Header)}`);
  if (options.signedByTargets && sha256 !== options.signedByTargets.sha256)
    throw invalid(`has sha256 ${sha256}; the fleet's TUF targets sign ${options.signedByTargets.sha256}`);
  const signature = response.headers.get(CHUNK_HTTP.signatureHeader) ?? '';
  if (!chunkIndexSignatureValid(sha256, signature, options.fleetPublicKeyPem))
    throw invalid(`signature does not match the fleet key (index sha256 ${sha256})`);
  const index = decodeChunkIndex(bytes);
  if (index.artifact.sha256 !== options.artifact.sha256 || index.artifact.size !== options.artifact.size)
    throw invalid(
      `is of artifact ${index.artifact.sha256} (${index.artifact.size} bytes), not of the signed ${options.artifact.sha256} (${options.artifact.size} bytes)`,
    );
  return { index, bytes };
}

/**
 * Asks for chunks by their positions and returns their bytes, concatenated, as far as they
 * arrived: an answer cut short, or one that is not brotli, gives what was decompressed before
 * the break and says why (the caller hashes every chunk anyway and asks again for the rest).
 * Never more than `expected` bytes are taken.
 */
export async function fetchChunks(
  endpoint: ChunkEndpoint,
  positions: number[],
  expected: number,
  meter: ByteMeter,
): Promise<{ bytes: Buffer; broken: string | null }> {
  const url = new URL(CHUNK_HTTP.chunksPath, endpoint.contentUrl);
  const request: ChunkRequest = { chunks: positions };
  const response = await (endpoint.fetch ?? fetch)(url, {
    method: 'POST',
    headers: { authorization: authorization(endpoint), 'content-type': 'application/json' },
    body: JSON.stringify(request),
    signal: endpoint.signal,
  });
  if (response.status !== 200 || !response.body) throw refused(response, `POST ${url.pathname}`);
  const parts: Buffer[] = [];
  let length = 0;
  let broken: string | null = null;
  try {
    await pipeline(
      response.body as unknown as AsyncIterable<Uint8Array>,
      async function* count(source: AsyncIterable<Uint8Array>) {
        for await (const piece of source) {
          meter.bytes += piece.length;
          yield piece;
        }
      },
      createBrotliDecompress(),
      async (source: AsyncIterable<Buffer>) => {
        for await (const piece of source) {
          const room = expected - length;
          parts.push(piece.subarray(0, room));
          length += Math.min(piece.length, room);
          if (piece.length > room)
            throw new Error(`the answer holds more than the ${expected} bytes asked for`);
        }
      },
    );
  } catch (error) {
    if (endpoint.signal.aborted) throw error;
    broken = (error as Error).message;
  }
  if (broken === null && length < expected) broken = `the answer ended after ${length} of ${expected} bytes`;
  return { bytes: Buffer.concat(parts, length), broken };
}

/** Reads a whole (small) answer, refusing one longer than `limit`. */
async function readLimited(
  body: ReadableStream<Uint8Array>,
  limit: number,
  meter: ByteMeter,
): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  let length = 0;
  for await (const piece of body as unknown as AsyncIterable<Uint8Array>) {
    meter.bytes += piece.length;
    length += piece.length;
    if (length > limit)
      throw new BoardfleetError(
        'chunk-index-invalid',
        `the chunk index answer is longer than ${limit} bytes`,
      );
    parts.push(piece);
  }
  return Buffer.concat(parts, length);
}
