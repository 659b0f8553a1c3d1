/**
 * The chunk index of an artifact: its content cut by FastCDC into chunks, each named by its
 * sha256, in order. The server publishes one beside every deployable artifact it chunks; an
 * agent that holds an older version assembles the new one from the chunks it already has and
 * fetches only the rest (see PROTOCOL.md, "Delta updates").
 *
 * Binary, because it is fetched on the slow links deltas are for (36 bytes a chunk):
 *
 *   "BFCHUNKS" | u8 format (1) | u8 algorithm (1 = fastcdc) | u32 min | u32 avg | u32 max
 *   | artifact sha256 (32 bytes) | u64 artifact size | u32 count | count × (u32 length | sha256)
 *
 * All integers are big-endian. The fleet key signs {@link chunkIndexStatement} of the index's
 * sha256; the agent checks that signature and that the index names the artifact the signed
 * manifest names, and checks the whole assembled result against that manifest anyway.
 */
import { createHash, createPublicKey, type KeyObject, verify } from 'node:crypto';
import { BoardfleetError } from './errors.ts';

const MAGIC = Buffer.from('BFCHUNKS', 'ascii');
const DELTA_MAGIC = Buffer.from('BFCIDLT1', 'ascii');
const FORMAT = 1;
const FASTCDC = 1;
export const CHUNK_INDEX_HEADER_BYTES = 66;
export const CHUNK_ENTRY_BYTES = 36;

/** The HTTP names of the chunk index and chunk endpoints (requests and answers). */
export const CHUNK_HTTP = {
  /** `GET` beside an artifact's content URL: `/api/v1/artifacts/<id>/chunk-index`. */
  indexPath: 'chunk-index',
  /** `POST` beside the content URL: `/api/v1/artifacts/<id>/chunks`, body {@link ChunkRequest}. */
  chunksPath: 'chunks',
  /** Query parameter: the sha256 of an index the device holds; the answer may be a delta of it. */
  baseQuery: 'base',
  /** Answer headers: the full index's sha256, its signature, and `full` or `delta`. */
  sha256Header: 'x-boardfleet-chunk-index-sha256',
  signatureHeader: 'x-boardfleet-chunk-index-signature',
  encodingHeader: 'x-boardfleet-chunk-index-encoding',
  /** The chunks answer: their bytes, concatenated in the order asked, compressed with brotli. */
  chunksMediaType: 'application/x-boardfleet-chunks+br',
  /** At most this many chunks in one request. */
  maxChunksPerRequest: 1024,
} as const;

/** What a device asks of `POST …/chunks`: positions in the artifact's chunk index. */
export interface ChunkRequest {
  chunks: number[];
}

export interface ChunkIndexEntry {
  /** Where the chunk starts in the artifact (derived: the sum of the lengths before it). */
  offset: number;
  length: number;
  /** Hex. */
  sha256: string;
}

export interface ChunkIndex {
  chunker: { algorithm: 'fastcdc'; minSize: number; avgSize: number; maxSize: number };
  artifact: { sha256: string; size: number };
  chunks: ChunkIndexEntry[];
}

/** Encodes an index; the lengths must add up to the artifact's size. */
export function encodeChunkIndex(index: ChunkIndex): Buffer {
  const bytes = Buffer.alloc(CHUNK_INDEX_HEADER_BYTES + index.chunks.length * CHUNK_ENTRY_BYTES);
  MAGIC.copy(bytes, 0);
  bytes.writeUInt8(FORMAT, 8);
  bytes.writeUInt8(FASTCDC, 9);
  bytes.writeUInt32BE(index.chunker.minSize, 10);
  bytes.writeUInt32BE(index.chunker.avgSize, 14);
  bytes.writeUInt32BE(index.chunker.maxSize, 18);
  Buffer.from(index.artifact.sha256, 'hex').copy(bytes, 22);
  bytes.writeBigUInt64BE(BigInt(index.artifact.size), 54);
  bytes.writeUInt32BE(index.chunks.length, 62);
  let position = CHUNK_INDEX_HEADER_BYTES;
  for (const chunk of index.chunks) {
    bytes.writeUInt32BE(chunk.length, position);
    Buffer.from(chunk.sha256, 'hex').copy(bytes, position + 4);
    position += CHUNK_ENTRY_BYTES;
  }
  return bytes;
}

/**
 * Decodes and checks an index: magic, format, sizes within the chunker's bounds, lengths that
 * add up to the artifact. Anything else is a `chunk-index-invalid` error saying what.
 */
export function decodeChunkIndex(bytes: Buffer): ChunkIndex {
  const invalid = (why: string) => new BoardfleetError('chunk-index-invalid', `the chunk index ${why}`);
  if (bytes.length < CHUNK_INDEX_HEADER_BYTES || !bytes.subarray(0, 8).equals(MAGIC))
    throw invalid('does not start with a chunk index header');
  if (bytes.readUInt8(8) !== FORMAT) throw invalid(`has format ${bytes.readUInt8(8)}, not ${FORMAT}`);
  if (bytes.readUInt8(9) !== FASTCDC) throw invalid(`names chunker ${bytes.readUInt8(9)}, not FastCDC`);
  const chunker = {
    algorithm: 'fastcdc' as const,
    minSize: bytes.readUInt32BE(10),
    avgSize: bytes.readUInt32BE(14),
    maxSize: bytes.readUInt32BE(18),
  };
  if (!(chunker.minSize > 0 && chunker.minSize <= chunker.avgSize && chunker.avgSize <= chunker.maxSize))
    throw invalid(
      `has chunk sizes out of order (${chunker.minSize}, ${chunker.avgSize}, ${chunker.maxSize})`,
    );
  const size = bytes.readBigUInt64BE(54);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid('names an artifact too large to be real');
  const count = bytes.readUInt32BE(62);
  if (bytes.length !== CHUNK_INDEX_HEADER_BYTES + count * CHUNK_ENTRY_BYTES)
    throw invalid(
      `is ${bytes.length} bytes long; ${count} chunks need ${CHUNK_INDEX_HEADER_BYTES + count * CHUNK_ENTRY_BYTES}`,
    );
  const chunks: ChunkIndexEntry[] = [];
  let offset = 0;
  for (let position = CHUNK_INDEX_HEADER_BYTES; position < bytes.length; position += CHUNK_ENTRY_BYTES) {
    const length = bytes.readUInt32BE(position);
    if (length === 0 || length > chunker.maxSize)
      throw invalid(`has a chunk of ${length} bytes at ${offset}, outside 1..${chunker.maxSize}`);
    chunks.push({
      offset,
      length,
      sha256: bytes.toString('hex', position + 4, position + CHUNK_ENTRY_BYTES),
    });
    offset += length;
  }
  if (offset !== Number(size)) throw invalid(`covers ${offset} bytes of an artifact of ${size}`);
  return { chunker, artifact: { sha256: bytes.toString('hex', 22, 54), size: Number(size) }, chunks };
}

/**
 * An index's path among the fleet's TUF targets (beside `artifacts/<name>/<version>`): a device
 * that trusts the fleet's TUF root takes only the index targets lists, by length and sha256.
 */
export const chunkIndexTargetPath = (name: string, version: string) => `chunk-indexes/${name}/${version}`;

/** What the fleet key signs for an index: its sha256, in a sentence no other signed text can be. */
export function chunkIndexStatement(indexSha256: string): string {
  return `boardfleet chunk index v1 ${indexSha256}`;
}

export const chunkIndexSha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

let lastKey: { pem: string; key: KeyObject } | null = null;

/** Whether `signatureBase64` is the fleet key's ed25519 signature of the index with this sha256. */
export function chunkIndexSignatureValid(
  indexSha256: string,
  signatureBase64: string,
  publicKeyPem: string,
): boolean {
  if (lastKey?.pem !== publicKeyPem) lastKey = { pem: publicKeyPem, key: createPublicKey(publicKeyPem) };
  try {
    return verify(
      null,
      Buffer.from(chunkIndexStatement(indexSha256)),
      lastKey.key,
      Buffer.from(signatureBase64, 'base64'),
    );
  } catch {
    return false;
  }
}

/**
 * An index as a delta of a base index the device already holds (the one of the version it
 * runs): runs of the base's entries and literal entries. Between two versions of an image most
 * entries are the base's, so the 150 KB index of a 70 MB payload travels in a few hundred bytes.
 *
 *   "BFCIDLT1" | base index sha256 (32) | target header (66) | ops
 *   op 1: u32 first | u32 count  — copy `count` entries of the base from `first`
 *   op 2: u32 count | count × entry — literal entries
 */
export function encodeChunkIndexDelta(base: Buffer, target: Buffer): Buffer {
  const baseEntries = new Map<string, number>();
  for (let position = CHUNK_INDEX_HEADER_BYTES; position < base.length; position += CHUNK_ENTRY_BYTES) {
    const key = base.toString('hex', position, position + CHUNK_ENTRY_BYTES);
    if (!baseEntries.has(key))
      baseEntries.set(key, (position - CHUNK_INDEX_HEADER_BYTES) / CHUNK_ENTRY_BYTES);
  }
  const baseCount = (base.length - CHUNK_INDEX_HEADER_BYTES) / CHUNK_ENTRY_BYTES;
  const parts: Buffer[] = [
    DELTA_MAGIC,
    Buffer.from(chunkIndexSha256(base), 'hex'),
    target.subarray(0, CHUNK_INDEX_HEADER_BYTES),
  ];
  const entryAt = (bytes: Buffer, index: number) =>
    bytes.subarray(
      CHUNK_INDEX_HEADER_BYTES + index * CHUNK_ENTRY_BYTES,
      CHUNK_INDEX_HEADER_BYTES + (index + 1) * CHUNK_ENTRY_BYTES,
    );
  const targetCount = (target.length - CHUNK_INDEX_HEADER_BYTES) / CHUNK_ENTRY_BYTES;
  let literals: Buffer[] = [];
  const flushLiterals = () => {
    if (literals.length === 0) return;
    const op = Buffer.alloc(5);
    op.writeUInt8(2, 0);
    op.writeUInt32BE(literals.length, 1);
    parts.push(op, ...literals);
    literals = [];
  };
  for (let index = 0; index < targetCount;) {
    const first = baseEntries.get(entryAt(target, index).toString('hex'));
    if (first === undefined) {
      literals.push(entryAt(target, index));
      index++;
      continue;
    }
    let count = 1;
    while (
      index + count < targetCount &&
      first + count < baseCount &&
      entryAt(target, index + count).equals(entryAt(base, first + count))
    )
      count++;
    flushLiterals();
    const op = Buffer.alloc(9);
    op.writeUInt8(1, 0);
    op.writeUInt32BE(first, 1);
    op.writeUInt32BE(count, 5);
    parts.push(op);
    index += count;
  }
  flushLiterals();
  return Buffer.concat(parts);
}

/**
 * Rebuilds the full index from a delta and its base. The caller checks the result's sha256
 * against the signed one: a wrong base or a forged delta can only give an index that fails it.
 */
export function applyChunkIndexDelta(base: Buffer, delta: Buffer): Buffer {
  const invalid = (why: string) => new BoardfleetError('chunk-index-invalid', `the chunk index delta ${why}`);
  const prelude = 8 + 32 + CHUNK_INDEX_HEADER_BYTES;
  if (delta.length < prelude || !delta.subarray(0, 8).equals(DELTA_MAGIC))
    throw invalid('has no delta header');
  if (delta.toString('hex', 8, 40) !== chunkIndexSha256(base)) throw invalid('is of another base index');
  const header = delta.subarray(40, prelude);
  const count = header.readUInt32BE(62);
  const baseCount = (base.length - CHUNK_INDEX_HEADER_BYTES) / CHUNK_ENTRY_BYTES;
  if (count > (delta.length + baseCount * CHUNK_ENTRY_BYTES) * 2) throw invalid(`claims ${count} chunks`);
  const parts: Buffer[] = [header];
  let entries = 0;
  for (let position = prelude; position < delta.length;) {
    const op = delta.readUInt8(position);
    if (position + 9 > delta.length && op === 1) throw invalid('ends inside a copy');
    if (position + 5 > delta.length) throw invalid('ends inside an operation');
    if (op === 1) {
      const first = delta.readUInt32BE(position + 1);
      const run = delta.readUInt32BE(position + 5);
      if (first + run > baseCount)
        throw invalid(`copies entries ${first}..${first + run} of a base of ${baseCount}`);
      parts.push(
        base.subarray(
          CHUNK_INDEX_HEADER_BYTES + first * CHUNK_ENTRY_BYTES,
          CHUNK_INDEX_HEADER_BYTES + (first + run) * CHUNK_ENTRY_BYTES,
        ),
      );
      entries += run;
      position += 9;
    } else if (op === 2) {
      const run = delta.readUInt32BE(position + 1);
      const end = position + 5 + run * CHUNK_ENTRY_BYTES;
      if (end > delta.length) throw invalid('ends inside its literal entries');
      parts.push(delta.subarray(position + 5, end));
      entries += run;
      position = end;
    } else throw invalid(`has an unknown operation ${op}`);
    if (entries > count) throw invalid(`holds more than the ${count} chunks its header says`);
  }
  if (entries !== count) throw invalid(`holds ${entries} chunks; its header says ${count}`);
  return Buffer.concat(parts);
}
