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
import { authenticateDeviceRequest } from '../auth/device-basic-auth.ts';
import { OperatorAuthenticator } from '../auth/operator-authenticator.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { ApiRoute } from '../common/api-route.ts';
import { notFound } from '../common/errors.ts';
import { parseBody } from '../common/zod-body.ts';
import { RolloutRepository } from '../rollouts/rollout.repository.ts';
import { ArtifactService } from './artifact.service.ts';

@Controller()
export class ArtifactsController {
  constructor(
    @Inject(ArtifactService) private readonly artifacts: ArtifactService,
    @Inject(OperatorAuthenticator) private readonly operatorAuth: OperatorAuthenticator,
    @Inject(DeviceAuthenticator) private readonly devices: DeviceAuthenticator,
    @Inject(RolloutRepository) private readonly rollouts: RolloutRepository,
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

  /**
   * Operators (a token) download any artifact; a device (HTTP Basic: device id and secret) only one
   * a deployment sent it, and is told 404 for any other, as for a missing one, so ids do not leak.
   */
  @ApiRoute(operations.downloadArtifact)
  async content(@Param('id') id: string, @Req() request: Request, @Res() response: Response): Promise<void> {
    const downloader = await this.authenticateDownloader(request, response);
    if (downloader.deviceId !== null && !(await this.rollouts.sentArtifact(downloader.deviceId, id)))
      throw notFound(`artifact ${id}`);
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
