import { Controller, Get, HttpCode, Inject, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request, Response } from 'express';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import { bearerToken, Public } from '../auth/operator-auth.guard.ts';
import { OperatorTokenRepository } from '../auth/operator-token.repository.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { parseBody } from '../common/zod-body.ts';
import { ArtifactService } from './artifact.service.ts';

const listQuery = z.strictObject({
  name: z.string().max(128).optional(),
  kind: z.string().max(32).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});

@ApiTags('artifacts')
@ApiBearerAuth()
@Controller('api/v1')
export class ArtifactsController {
  constructor(
    @Inject(ArtifactService) private readonly artifacts: ArtifactService,
    @Inject(OperatorTokenRepository) private readonly operatorTokens: OperatorTokenRepository,
    @Inject(DeviceAuthenticator) private readonly devices: DeviceAuthenticator,
  ) {}

  @Post('artifacts')
  @HttpCode(201)
  @ApiOperation({
    summary:
      'Upload an artifact: the body is the raw content (streamed); query: name, version (semver), kind, boards (comma-separated), sha256, size',
  })
  async upload(
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
    @Query() query: unknown,
  ) {
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

  @Get('artifacts')
  @ApiOperation({ summary: 'List artifacts, newest first' })
  async list(@Query() query: unknown) {
    const filter = parseBody(listQuery, query);
    return { artifacts: await this.artifacts.list(filter), limit: filter.limit, offset: filter.offset };
  }

  @Get('artifacts/:id')
  @ApiOperation({ summary: 'An artifact with its signed manifest' })
  get(@Param('id') id: string) {
    return this.artifacts.getOrThrow(id);
  }

  /** Devices download with their own credential (HTTP Basic: device id and secret); operators with a token. */
  @Public()
  @Get('artifacts/:id/content')
  @ApiOperation({
    summary: 'Download the content; supports Range requests (resume). Operator token or device Basic auth',
  })
  async content(@Param('id') id: string, @Req() request: Request, @Res() response: Response) {
    await this.authorizeDownload(request);
    const artifact = await this.artifacts.getOrThrow(id);
    response.setHeader('x-artifact-sha256', artifact.sha256);
    response.sendFile(this.artifacts.contentPath(artifact), {
      acceptRanges: true,
      cacheControl: false,
      headers: { 'content-type': 'application/octet-stream' },
    });
  }

  @Public()
  @Get('fleet-key')
  @ApiOperation({ summary: "The fleet's ed25519 public key (PEM) that agents verify manifests with" })
  fleetKey() {
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
