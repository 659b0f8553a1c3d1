import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, constants } from 'node:zlib';
import { CHUNKER, chunkStream } from '../../lib/content-chunks.ts';
import { sha256 } from '../../lib/hash.ts';
import {
  CHUNK_HTTP,
  type ChunkIndex,
  chunkIndexSha256,
  chunkIndexStatement,
  encodeChunkIndex,
  encodeChunkIndexDelta,
} from '../../protocol/chunk-index.ts';
import { type ArtifactManifest, canonicalManifest } from '../../protocol/manifest.ts';
import type { DesiredState } from '../../protocol/schemas.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

interface Published {
  bytes: Buffer;
  index: ChunkIndex;
  indexBytes: Buffer;
}

/** What the double was asked, for tests that count requests and bytes. */
export interface LoggedRequest {
  method: string;
  path: string;
  base: string | null;
  positions: number[];
  /** Bytes of the answer's body. */
  answered: number;
}

/**
 * A test double of the server's artifact endpoints as DESIGN.md (issue 17) and CHUNK_HTTP define
 * them: `GET …/content` (with Range), `GET …/chunk-index[?base=]` (signed, a delta of a known
 * base when smaller) and `POST …/chunks` (brotli). Faults are switched on per test.
 */
export class ChunkServerDouble {
  readonly fleetPublicKeyPem: string;
  private readonly privateKey: KeyObject;
  private readonly artifacts = new Map<string, Published>();
  private readonly indexesBySha = new Map<string, Buffer>();
  readonly requests: LoggedRequest[] = [];
  readonly faults = {
    /** Positions served with wrong bytes, and how many more times. */
    corrupt: new Map<number, number>(),
    /** Positions served with the bytes of another chunk (of the same length class). */
    foreign: new Set<number>(),
    /** How many chunk answers are cut half way (the connection then drops). */
    truncateAnswers: 0,
    /** Sign the index with a key the fleet does not have. */
    badSignature: false,
    /** Answer with the index of this other artifact id. */
    indexOf: null as string | null,
    noIndex: false,
  };

  private constructor(private readonly server: Server) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    this.fleetPublicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    server.on('request', (request, response) => {
      this.answer(request, response).catch((error: unknown) => {
        response.writeHead(500).end(String(error));
      });
    });
  }

  static async start(): Promise<ChunkServerDouble> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return new ChunkServerDouble(server);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  contentUrl(id: string): string {
    return `${this.url}/api/v1/artifacts/${id}/content`;
  }

  /** Stores an artifact and its chunk index; returns the index. */
  async publish(id: string, bytes: Buffer): Promise<ChunkIndex> {
    const chunks = [];
    for await (const chunk of chunkStream(
      (async function* () {
        yield bytes;
      })(),
    ))
      chunks.push({ offset: chunk.offset, length: chunk.length, sha256: chunk.sha256.toString('hex') });
    const index: ChunkIndex = {
      chunker: { ...CHUNKER },
      artifact: { sha256: sha256(bytes), size: bytes.length },
      chunks,
    };
    const indexBytes = encodeChunkIndex(index);
    this.artifacts.set(id, { bytes, index, indexBytes });
    this.indexesBySha.set(chunkIndexSha256(indexBytes), indexBytes);
    return index;
  }

  /** A deployment of a published artifact, its manifest signed by the double's fleet key. */
  deployment(id: string, options: { version: string; strategy?: Deployment['strategy'] }): Deployment {
    const { bytes } = this.published(id);
    const manifest: ArtifactManifest = {
      schemaVersion: 1,
      name: 'demo',
      version: options.version,
      kind: 'app-bundle',
      boards: ['rpi-4b'],
      sha256: sha256(bytes),
      size: bytes.length,
      createdAt: 0,
    };
    const text = canonicalManifest(manifest);
    return {
      id: `dep-${options.version}`,
      strategy: options.strategy ?? 'app-bundle',
      artifact: 'demo',
      version: options.version,
      sha256: manifest.sha256,
      size: manifest.size,
      url: `/api/v1/artifacts/${id}/content`,
      manifest: text,
      signature: sign(null, Buffer.from(text), this.privateKey).toString('base64'),
      rollbackOrder: null,
    };
  }

  /** Bytes of chunk answers and index answers since the log was last cleared. */
  answeredBytes(kind?: 'chunk-index' | 'chunks' | 'content'): number {
    return this.requests
      .filter((request) => !kind || request.path.endsWith(`/${kind}`))
      .reduce((sum, request) => sum + request.answered, 0);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private published(id: string): Published {
    const found = this.artifacts.get(id);
    if (!found) throw new Error(`the double has no artifact ${id}`);
    return found;
  }

  private async answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', this.url);
    const match = /^\/api\/v1\/artifacts\/([^/]+)\/(content|chunk-index|chunks)$/.exec(url.pathname);
    const artifact = match ? this.artifacts.get(match[1] as string) : undefined;
    const log: LoggedRequest = {
      method: request.method ?? 'GET',
      path: url.pathname,
      base: url.searchParams.get(CHUNK_HTTP.baseQuery),
      positions: [],
      answered: 0,
    };
    this.requests.push(log);
    const send = (status: number, body: Buffer, headers: Record<string, string> = {}) => {
      log.answered = body.length;
      response.writeHead(status, { 'content-length': String(body.length), ...headers }).end(body);
    };
    if (!match || !artifact) return send(404, Buffer.from('not found'));
    if (match[2] === 'content') {
      const from = Number(/^bytes=(\d+)-$/.exec(request.headers.range ?? '')?.[1] ?? 0);
      return send(from > 0 ? 206 : 200, artifact.bytes.subarray(from));
    }
    if (match[2] === 'chunk-index') {
      if (this.faults.noIndex) return send(404, Buffer.from('no chunk index'));
      const served = this.faults.indexOf ? this.published(this.faults.indexOf) : artifact;
      const indexSha256 = chunkIndexSha256(served.indexBytes);
      const key = this.faults.badSignature ? generateKeyPairSync('ed25519').privateKey : this.privateKey;
      const base = log.base ? this.indexesBySha.get(log.base) : undefined;
      const delta = base ? encodeChunkIndexDelta(base, served.indexBytes) : null;
      const useDelta = delta !== null && delta.length < served.indexBytes.length;
      return send(200, useDelta ? delta : served.indexBytes, {
        'content-type': 'application/octet-stream',
        [CHUNK_HTTP.sha256Header]: indexSha256,
        [CHUNK_HTTP.signatureHeader]: sign(null, Buffer.from(chunkIndexStatement(indexSha256)), key).toString(
          'base64',
        ),
        [CHUNK_HTTP.encodingHeader]: useDelta ? 'delta' : 'full',
      });
    }
    const body: Buffer[] = [];
    for await (const piece of request) body.push(piece as Buffer);
    log.positions = (JSON.parse(Buffer.concat(body).toString('utf8')) as { chunks: number[] }).chunks;
    const parts = log.positions.map((position) => this.chunkBytes(artifact, position));
    const compressed = brotliCompressSync(Buffer.concat(parts), {
      params: { [constants.BROTLI_PARAM_QUALITY]: 5 },
    });
    if (this.faults.truncateAnswers > 0) {
      this.faults.truncateAnswers--;
      log.answered = Math.floor(compressed.length / 2);
      response.writeHead(200, { 'content-type': CHUNK_HTTP.chunksMediaType });
      response.write(compressed.subarray(0, log.answered), () => response.destroy());
      return;
    }
    send(200, compressed, { 'content-type': CHUNK_HTTP.chunksMediaType });
  }

  private chunkBytes(artifact: Published, position: number): Buffer {
    const chunk = artifact.index.chunks[position];
    if (!chunk) throw new Error(`no chunk ${position}`);
    const bytes = artifact.bytes.subarray(chunk.offset, chunk.offset + chunk.length);
    const corruptions = this.faults.corrupt.get(position) ?? 0;
    if (corruptions > 0) {
      this.faults.corrupt.set(position, corruptions - 1);
      const corrupt = Buffer.from(bytes);
      corrupt[0] = (corrupt[0] as number) ^ 0xff;
      return corrupt;
    }
    if (this.faults.foreign.has(position)) {
      // Another chunk's bytes, cut or padded to this one's length: well-formed, but not this chunk.
      const other = artifact.index.chunks[(position + 1) % artifact.index.chunks.length];
      const foreign = Buffer.alloc(chunk.length);
      if (other)
        artifact.bytes.copy(foreign, 0, other.offset, other.offset + Math.min(other.length, chunk.length));
      return foreign;
    }
    return bytes;
  }
}
