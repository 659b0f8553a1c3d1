import { Body, Controller, Inject, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import {
  type IssuedDeviceCertificate,
  requestDeviceCertificateBody,
} from '../../protocol/api/device-certificates.ts';
import { operations } from '../../protocol/api/operations.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { authenticateDeviceRequest } from '../auth/device-basic-auth.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { ApiRoute } from '../common/api-route.ts';
import { parseBody } from '../common/zod-body.ts';
import { DeviceCertificateService } from './device-certificate.service.ts';

@Controller()
export class DeviceCertificateController {
  constructor(
    @Inject(DeviceAuthenticator) private readonly deviceAuth: DeviceAuthenticator,
    @Inject(DeviceCertificateService) private readonly certificates: DeviceCertificateService,
  ) {}

  /**
   * A certificate for a device that proves its secret (HTTP Basic) and has none that works: one
   * given its id and secret rather than provisioned, one back after its certificate expired, or
   * one of a fleet that began to require them. Public to the operator guard: the device's
   * credentials are checked here.
   */
  @ApiRoute(operations.requestDeviceCertificate)
  async request(
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
    @Body() body: unknown,
  ): Promise<IssuedDeviceCertificate> {
    const deviceId = await authenticateDeviceRequest(this.deviceAuth, request, response);
    if (!deviceId)
      throw new BoardfleetError('unauthorized', 'device credentials (HTTP Basic deviceId:secret) are needed');
    const { csr } = parseBody(requestDeviceCertificateBody, body);
    return { certificatePem: await this.certificates.issueForDevice(deviceId, csr) };
  }
}
