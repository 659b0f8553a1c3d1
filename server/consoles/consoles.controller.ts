import { Controller, Inject, Param, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { ConsoleList, ConsoleSummary } from '../../protocol/api/consoles.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { authenticateDeviceRequest } from '../auth/device-basic-auth.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { ApiRoute } from '../common/api-route.ts';
import { invalidRequest } from '../common/errors.ts';
import { ConsoleService } from './console.service.ts';

@Controller()
export class ConsolesController {
  constructor(
    @Inject(ConsoleService) private readonly consoles: ConsoleService,
    @Inject(DeviceAuthenticator) private readonly authenticator: DeviceAuthenticator,
  ) {}

  /** Devices upload with their own credential (HTTP Basic: device id and secret), and only their own. */
  @ApiRoute(operations.uploadConsole)
  async upload(
    @Param('id') id: string,
    @Param('artifact') artifact: string,
    @Param('version') version: string,
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
  ): Promise<ConsoleSummary> {
    try {
      await this.authorizeDevice(id, request, response);
      this.consoles.parseKey(artifact, version);
      if (!request.is('text/plain')) {
        throw invalidRequest(
          `send the console as text/plain (Content-Type was ${request.headers['content-type'] ?? 'missing'})`,
        );
      }
      return await this.consoles.store(id, artifact, version, request);
    } catch (error) {
      // The rest of the body is not read: close the connection rather than leave it half-consumed.
      if (!request.complete) response.setHeader('connection', 'close');
      throw error;
    }
  }

  @ApiRoute(operations.listConsoles)
  async list(@Param('id') id: string): Promise<ConsoleList> {
    return { consoles: await this.consoles.list(id) };
  }

  @ApiRoute(operations.getConsole)
  async get(
    @Param('id') id: string,
    @Param('artifact') artifact: string,
    @Param('version') version: string,
    @Res() response: Response,
  ): Promise<void> {
    const stored = await this.consoles.get(id, artifact, version);
    response.setHeader('x-console-updated-at', String(stored.updatedAt));
    response.type('text/plain; charset=utf-8').send(stored.text);
  }

  private async authorizeDevice(id: string, request: Request, response: Response): Promise<void> {
    const deviceId = await authenticateDeviceRequest(this.authenticator, request, response);
    if (deviceId === null) {
      throw new BoardfleetError(
        'unauthorized',
        'uploading a console needs the device credentials (HTTP Basic)',
      );
    }
    if (deviceId !== id) {
      throw new BoardfleetError(
        'forbidden',
        `device ${deviceId} may upload only its own consoles, not ${id}'s`,
      );
    }
  }
}
