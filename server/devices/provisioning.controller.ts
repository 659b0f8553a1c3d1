import { Body, Controller, Headers, Inject, Req } from '@nestjs/common';
import type { Request } from 'express';
import { operations } from '../../protocol/api/operations.ts';
import {
  type CreatedProvisioningToken,
  createProvisioningTokenBody,
  provisionBody,
  type ProvisionedDevice,
} from '../../protocol/api/provisioning.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { bearerToken } from '../auth/operator-auth.guard.ts';
import { MQTT_ENDPOINT, type MqttEndpoint } from '../broker/mqtt-endpoint.ts';
import { ApiRoute } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { DeviceService } from './device.service.ts';
import { ProvisioningTokenRepository } from './provisioning-token.repository.ts';

const HOUR_MS = 60 * 60 * 1000;

@Controller()
export class ProvisioningController {
  constructor(
    @Inject(ProvisioningTokenRepository) private readonly tokens: ProvisioningTokenRepository,
    @Inject(DeviceService) private readonly devices: DeviceService,
    @Inject(MQTT_ENDPOINT) private readonly mqttEndpoint: MqttEndpoint,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(SigningKeyRepository) private readonly signingKey: SigningKeyRepository,
  ) {}

  @ApiRoute(operations.createProvisioningToken)
  async createToken(@Body() body: unknown): Promise<CreatedProvisioningToken> {
    const { name, expiresInHours } = parseBody(createProvisioningTokenBody, body);
    const now = this.clock.now();
    return this.tokens.create(name, expiresInHours ? now + expiresInHours * HOUR_MS : null, now);
  }

  /** Public to the operator guard: the agent's provisioning token is checked here. */
  @ApiRoute(operations.provision)
  async provision(
    @Req() request: Request,
    @Headers('host') host: string | undefined,
    @Body() body: unknown,
  ): Promise<ProvisionedDevice> {
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
