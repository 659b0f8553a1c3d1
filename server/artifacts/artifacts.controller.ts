import { pipeline } from 'node:stream/promises';
import { constants as zlib, createBrotliCompress } from 'node:zlib';
import { Body, Controller, Inject, Optional, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import pino, { type Logger } from 'pino';
import {
  type Artifact,
  type ArtifactList,
  type FleetKey,
  listArtifactsQuery,
} from '../../protocol/api/artifacts.ts';
import { chunkIndexQuery, chunkRequestBody } from '../../protocol/api/artifact-chunks.ts';
import { operations } from '../../protocol/api/operations.ts';
import { CHUNK_HTTP } from '../../protocol/chunk-index.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { authenticateDeviceRequest } from '../auth/device-basic-auth.ts';
import { OperatorAuthenticator } from '../auth/operator-authenticator.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { ApiRoute } from '../common/api-route.ts';
import { HTTP_LOGGER, notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { RolloutRepository } from '../rollouts/rollout.repository.ts';
import type { ArtifactRecord } from './artifact.repository.ts';
import { ArtifactService } from './artifact.service.ts';
import type { BlobRange } from './blob-store.ts';
import { ChunkIndexService } from './chunk-index.service.ts';

/** Brotli's quality for chunks: most of what it can save, at a CPU cost paid again for every request. */
const CHUNKS_BROTLI_QUALITY = 5;

@Controller()
export class ArtifactsController {
  constructor(
    @Inject(ArtifactService) private readonly artifacts: ArtifactService,
    @Inject(OperatorAuthenticator) private readonly operatorAuth: OperatorAuthenticator,
    @Inject(DeviceAuthenticator) private readonly devices: DeviceAuthenticator,
    @Inject(RolloutRepository) private readonly rollouts: RolloutRepository,
    @Inject(ChunkIndexService) private readonly chunkIndexes: ChunkIndexService,
    @Optional() @Inject(HTTP_LOGGER) private readonly logger: Logger = pino(),
  ) {}

  @ApiRoute(operations.uploadArtifact)
  async upload(
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
    @Query() query: unknown,
  ): Promise<Artifact> {
    try {
      const upload = this.artifacts.parseUpload(query);
      const contentLength = request.headers['content-length'];
      if (contentLength !== undefined && Number(contentLength) !== upload.size) {
        throw new BoardfleetError(
          'invalid-request',
          `the body has ${contentLength} bytes (Content-Length), not the declared size ${upload.size}`,
        );
      }
      const { artifact } = await this.artifacts.upload(upload, request);
      return (await this.artifacts.describe([artifact]))[0] as Artifact;
    } catch (error) {
      // The rest of the body is not read: close the connection rather than leave it half-consumed.
      if (!request.complete) response.setHeader('connection', 'close');
      throw error;
    }
  }

  @ApiRoute(operations.listArtifacts)
  async list(@Query() query: unknown): Promise<ArtifactList> {
    const filter = parseBody(listArtifactsQuery, query);
    return { artifacts: await this.artifacts.list(filter), limit: filter.limit, offset: filter.offset };
  }

  @ApiRoute(operations.getArtifact)
  async get(@Param('id') id: string): Promise<Artifact> {
    return (await this.artifacts.describe([await this.artifacts.getOrThrow(id)]))[0] as Artifact;
  }

  @ApiRoute(operations.downloadArtifact)
  async content(@Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    await this.sendContent(request, response, await this.readableArtifact(id, request, response));
  }

  /** The signed chunk index, or a delta of the one the caller holds (`?base=`). */
  @ApiRoute(operations.getArtifactChunkIndex)
  async chunkIndex(
    @Param('id') id: string,
    @Query() query: unknown,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const artifact = await this.readableArtifact(id, request, response);
    const { base } = parseBody(chunkIndexQuery, query);
    const answer = await this.chunkIndexes.indexAnswer(artifact, base);
    response.status(200);
    response.setHeader('content-type', 'application/octet-stream');
    response.setHeader(CHUNK_HTTP.sha256Header, answer.sha256);
    response.setHeader(CHUNK_HTTP.signatureHeader, answer.signature);
    response.setHeader(CHUNK_HTTP.encodingHeader, answer.encoding);
    response.end(answer.body);
  }

  /** The chunks asked for, in that order, as one brotli stream. */
  @ApiRoute(operations.fetchArtifactChunks)
  async chunks(
    @Param('id') id: string,
    @Body() body: unknown,
    @Req() request: Request,
    @Res() response: Response,
  ): Promise<void> {
    const artifact = await this.readableArtifact(id, request, response);
    const { chunks: positions } = parseBody(chunkRequestBody, body);
    const bytes = await this.chunkIndexes.chunkBytes(artifact, positions);
    response.status(200);
    response.setHeader('content-type', CHUNK_HTTP.chunksMediaType);
    // The client learns at once that its chunks are coming: brotli holds back its first bytes.
    response.flushHeaders();
    const compress = createBrotliCompress({
      params: { [zlib.BROTLI_PARAM_QUALITY]: CHUNKS_BROTLI_QUALITY },
    });
    // A chunk lost mid-answer destroys the response: the client sees it cut short, never wrong bytes.
    // A client that goes away ends the pipeline too, and closes the chunk being read.
    await pipeline(bytes, compress, response).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_STREAM_PREMATURE_CLOSE')
        this.logger.error({ err: error, artifact: artifact.id }, 'sending chunks failed mid-answer');
    });
  }

  /** The content, whole or the one range asked for, as express's sendFile answered from a file. */
  private async sendContent(request: Request, response: Response, artifact: ArtifactRecord): Promise<void> {
    const etag = `"${artifact.sha256}"`;
    response.setHeader('x-artifact-sha256', artifact.sha256);
    // Content-addressed: the sha256 is the strongest validator there is.
    response.setHeader('etag', etag);
    response.setHeader('accept-ranges', 'bytes');
    if (request.fresh) {
      response.status(304).end();
      return;
    }
    const range = requestedRange(request, artifact.size, etag);
    if (range === 'unsatisfiable') {
      response.status(416).setHeader('content-range', `bytes */${artifact.size}`).end();
      return;
    }
    // Opened before the content headers are set, so a missing blob is still a plain error answer.
    const body =
      request.method === 'HEAD' ? null : await this.artifacts.readContent(artifact, range ?? undefined);
    response.status(range ? 206 : 200);
    response.setHeader('content-type', 'application/octet-stream');
    response.setHeader('content-length', range ? range.end - range.start + 1 : artifact.size);
    if (range) response.setHeader('content-range', `bytes ${range.start}-${range.end}/${artifact.size}`);
    if (!body) {
      response.end();
      return;
    }
    body.once('error', (error) =>
      this.logger.error({ err: error, artifact: artifact.id }, 'reading an artifact failed mid-download'),
    );
    // A client that goes away mid-download ends the pipeline: that is no failure of ours.
    await pipeline(body, response).catch(() => undefined);
  }

  @ApiRoute(operations.getFleetKey)
  fleetKey(): FleetKey {
    return { algorithm: 'ed25519', publicKeyPem: this.artifacts.publicKeyPem };
  }

  /**
   * The artifact, if the caller may read its content: operators (a token) any artifact; a device
   * (HTTP Basic: device id and secret) only one a deployment sent it, and is told 404 for any
   * other, as for a missing one, so ids do not leak.
   */
  private async readableArtifact(id: string, request: Request, response: Response): Promise<ArtifactRecord> {
    const downloader = await this.authenticateDownloader(request, response);
    if (downloader.deviceId !== null && !(await this.rollouts.sentArtifact(downloader.deviceId, id)))
      throw notFound(`artifact ${id}`);
    return this.artifacts.getOrThrow(id);
  }

  /** Who downloads: an operator (`deviceId` null) or a device. */
  private async authenticateDownloader(
    request: Request,
    response: Response,
  ): Promise<{ deviceId: string | null }> {
    // An operator's bearer token or dashboard session; otherwise a device's credentials.
    if (await this.operatorAuth.identify(request).catch(() => null)) return { deviceId: null };
    const deviceId = await authenticateDeviceRequest(this.devices, request, response);
    if (deviceId !== null) return { deviceId };
    throw new BoardfleetError(
      'unauthorized',
      'downloading an artifact needs an operator token or device credentials',
    );
  }
}

/**
 * The one byte range a download asks for; null for the whole content, as express's sendFile
 * answered a malformed Range, several ranges, or an If-Range naming another version.
 */
function requestedRange(request: Request, size: number, etag: string): BlobRange | null | 'unsatisfiable' {
  const ifRange = request.headers['if-range'];
  if (ifRange !== undefined && !ifRange.includes(etag)) return null;
  const ranges = request.range(size, { combine: true });
  if (ranges === -1) return 'unsatisfiable';
  if (ranges === undefined || ranges === -2 || ranges.type !== 'bytes' || ranges.length !== 1) return null;
  const [only] = ranges;
  return only ? { start: only.start, end: only.end } : null;
}
