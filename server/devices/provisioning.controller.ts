import { Body, Controller, Headers, Inject, Post, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import type { Request } from 'express';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { bearerToken, Public } from '../auth/operator-auth.guard.ts';
import { MQTT_ENDPOINT, type MqttEndpoint } from '../broker/mqtt-endpoint.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { createProvisioningTokenBody, provisionBody } from './device.dto.ts';
import { DeviceService } from './device.service.ts';
import { ProvisioningTokenRepository } from './provisioning-token.repository.ts';

const HOUR_MS = 60 * 60 * 1000;

@ApiTags('provisioning')
@ApiBearerAuth()
@Controller('api/v1')
export class ProvisioningController {
  constructor(
    @Inject(ProvisioningTokenRepository) private readonly tokens: ProvisioningTokenRepository,
    @Inject(DeviceService) private readonly devices: DeviceService,
    @Inject(MQTT_ENDPOINT) private readonly mqttEndpoint: MqttEndpoint,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(SigningKeyRepository) private readonly signingKey: SigningKeyRepository,
  ) {}

  @Post('provisioning-tokens')
  @ApiOperation({ summary: 'Create a fleet provisioning token that agents use to register themselves' })
  @ApiBody({ schema: z.toJSONSchema(createProvisioningTokenBody) as object })
  createToken(@Body() body: unknown) {
    const { name, expiresInHours } = parseBody(createProvisioningTokenBody, body);
    const now = this.clock.now();
    return this.tokens.create(name, expiresInHours ? now + expiresInHours * HOUR_MS : null, now);
  }

  @Public()
  @Post('provision')
  @ApiOperation({
    summary: 'Agent self-registration with a provisioning token (Bearer); returns device credentials',
  })
  @ApiBody({ schema: z.toJSONSchema(provisionBody) as object })
  async provision(@Req() request: Request, @Headers('host') host: string | undefined, @Body() body: unknown) {
    const token = bearerToken(request);
    if (!token || !(await this.tokens.use(token, this.clock.now()))) {
      throw new BoardfleetError(
        'unauthorized',
        'the provisioning token is missing, unknown, revoked or expired',
      );
    }
    const { device, secret } = await this.devices.create(parseBody(provisionBody, body));
    return {
      deviceId: device.id,
      secret,
      mqttUrl: this.mqttEndpoint.urlFor(host),
      fleetPublicKeyPem: this.signingKey.publicKeyPem,
    };
  }
}
