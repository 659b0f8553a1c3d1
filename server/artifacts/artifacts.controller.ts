import { Controller, Inject, Param, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import {
  type Artifact,
  type ArtifactList,
  type FleetKey,
  listArtifactsQuery,
} from '../../protocol/api/artifacts.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { bearerToken } from '../auth/operator-auth.guard.ts';
import { OperatorTokenRepository } from '../auth/operator-token.repository.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { ArtifactService } from './artifact.service.ts';

@Controller()
export class ArtifactsController {
  constructor(
    @Inject(ArtifactService) private readonly artifacts: ArtifactService,
    @Inject(OperatorTokenRepository) private readonly operatorTokens: OperatorTokenRepository,
    @Inject(DeviceAuthenticator) private readonly devices: DeviceAuthenticator,
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
      return artifact;
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
    return this.artifacts.getOrThrow(id);
  }

  /** Devices download with their own credential (HTTP Basic: device id and secret); operators with a token. */
  @ApiRoute(operations.downloadArtifact)
  async content(@Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    await this.authorizeDownload(request);
    const artifact = await this.artifacts.getOrThrow(id);
    response.setHeader('x-artifact-sha256', artifact.sha256);
    response.sendFile(this.artifacts.contentPath(artifact), {
      acceptRanges: true,
      cacheControl: false,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }

  @ApiRoute(operations.getFleetKey)
  fleetKey(): FleetKey {
    return { algorithm: 'ed25519', publicKeyPem: this.artifacts.publicKeyPem };
  }

  private async authorizeDownload(request: Request): Promise<void> {
    const token = bearerToken(request);
    if (token && (await this.operatorTokens.findByToken(token))) return;
    const basic = request.headers.authorization?.match(/^Basic\s+(\S+)$/i)?.[1];
    if (basic) {
      const decoded = Buffer.from(basic, 'base64').toString();
      const separator = decoded.indexOf(':');
      if (
        separator > 0 &&
        (await this.devices.authenticate(decoded.slice(0, separator), decoded.slice(separator + 1)))
      )
        return;
    }
    throw new BoardfleetError(
      'unauthorized',
      'downloading an artifact needs an operator token or device credentials',
    );
  }
}
