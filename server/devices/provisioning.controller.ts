import { Body, Controller, Headers, Inject, Req } from '@nestjs/common';
import type { Request } from 'express';
import { operations } from '../../protocol/api/operations.ts';
import {
  type CreatedProvisioningToken,
  createProvisioningTokenBody,
  type MqttEndpointAnswer,
  type Provision,
  provisionBody,
  type ProvisionedDevice,
} from '../../protocol/api/provisioning.ts';
import { parseDuration } from '../../protocol/api/token-expiry.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { bearerToken } from '../auth/operator-authenticator.ts';
import { MQTT_ENDPOINT, type MqttEndpoint } from '../broker/mqtt-endpoint.ts';
import { ApiRoute } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { parseBody } from '../common/zod-body.ts';
import { DeviceService } from './device.service.ts';
import { type ProvisioningGrant, ProvisioningTokenRepository } from './provisioning-token.repository.ts';

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
    const { name, expiresIn, maxUses, board, tags } = parseBody(createProvisioningTokenBody, body);
    const now = this.clock.now();
    return this.tokens.create(
      {
        name,
        expiresAt: expiresIn ? now + (parseDuration(expiresIn) as number) : null,
        maxUses: maxUses ?? null,
        board: board ?? null,
        tags: tags ?? null,
      },
      now,
    );
  }

  /** Public: the broker's URL is no secret (the server prints it), and the agent asks before it has a session. */
  @ApiRoute(operations.getMqttEndpoint)
  mqttEndpointFor(@Headers('host') host: string | undefined): MqttEndpointAnswer {
    return { mqttUrl: this.mqttEndpoint.urlFor(host) };
  }

  /** Public to the operator guard: the agent's provisioning token is checked here. */
  @ApiRoute(operations.provision)
  async provision(
    @Req() request: Request,
    @Headers('host') host: string | undefined,
    @Body() body: unknown,
  ): Promise<ProvisionedDevice> {
    const token = bearerToken(request);
    const refused = new BoardfleetError(
      'unauthorized',
      'the provisioning token is missing, unknown, revoked, expired or used up',
    );
    if (!token) throw refused;
    const grant = await this.tokens.find(token, this.clock.now());
    if (!grant) throw refused;
    const device = withGrant(parseBody(provisionBody, body), grant);
    // Counted atomically only now: a refused request costs the token no use.
    if (!(await this.tokens.use(token, this.clock.now()))) throw refused;
    let created: Awaited<ReturnType<DeviceService['create']>>;
    try {
      // Devices booting one image ask for one name (its hostname): they get `name-2`, `name-3`…
      created = await this.devices.create({ ...device, onDuplicateName: 'suffix' });
    } catch (error) {
      await this.tokens.release(token);
      throw error;
    }
    return {
      deviceId: created.device.id,
      secret: created.secret,
      mqttUrl: this.mqttEndpoint.urlFor(host),
      fleetPublicKeyPem: this.signingKey.publicKeyPem,
    };
  }
}

/**
 * The device to register: what the token fixes wins. The agent may repeat a fixed board or leave
 * it out, and name only tags the token fixes; a request asking for anything else is refused
 * rather than silently changed, so a misconfigured agent is noticed.
 */
export function withGrant(request: Provision, grant: ProvisioningGrant): Provision {
  if (grant.board !== null && request.board !== undefined && request.board !== grant.board) {
    throw new BoardfleetError(
      'forbidden',
      `provisioning token ${grant.id} registers devices as board ${grant.board}, not ${request.board}`,
    );
  }
  const fixedTags = grant.tags;
  const extra = fixedTags === null ? [] : (request.tags ?? []).filter((tag) => !fixedTags.includes(tag));
  if (extra.length > 0) {
    throw new BoardfleetError(
      'forbidden',
      `provisioning token ${grant.id} fixes the tags (${fixedTags?.join(', ') || 'none'}); it does not allow ${extra.join(', ')}`,
    );
  }
  return {
    name: request.name,
    board: grant.board ?? request.board,
    tags: fixedTags ?? request.tags,
  };
}
