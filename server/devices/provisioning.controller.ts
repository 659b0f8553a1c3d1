import { Body, Controller, Headers, Inject, Optional, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import pino, { type Logger } from 'pino';
import { operations } from '../../protocol/api/operations.ts';
import {
  type CreatedProvisioningToken,
  createProvisioningTokenBody,
  type MqttEndpointAnswer,
  type Provision,
  pinnedProvisioningToken,
  provisionBody,
  type ProvisionedDevice,
  splitProvisioningToken,
} from '../../protocol/api/provisioning.ts';
import { parseDuration } from '../../protocol/api/token-expiry.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { SigningKeyRepository } from '../artifacts/signing-key.repository.ts';
import { authenticatedDeviceCredentials } from '../auth/device-basic-auth.ts';
import { bearerToken } from '../auth/operator-authenticator.ts';
import { DeviceAuthenticator } from '../broker/device-authenticator.ts';
import { DEVICE_BROKER, type DeviceBroker } from '../broker/device-broker.ts';
import { MQTT_ENDPOINT, type MqttEndpoint } from '../broker/mqtt-endpoint.ts';
import { ApiRoute } from '../common/api-route.ts';
import { CLOCK, type Clock } from '../common/clock.ts';
import { HTTP_LOGGER } from '../common/errors.ts';
import { DeviceCertificateService } from '../tls/device-certificate.service.ts';
import { FleetTls } from '../tls/fleet-tls.ts';
import { parseBody } from '../common/zod-body.ts';
import { DeviceRepository } from './device.repository.ts';
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
    @Inject(DeviceAuthenticator) private readonly deviceAuth: DeviceAuthenticator,
    @Inject(DEVICE_BROKER) private readonly broker: DeviceBroker,
    @Inject(DeviceRepository) private readonly deviceRecords: DeviceRepository,
    @Inject(FleetTls) private readonly tls: FleetTls,
    @Inject(DeviceCertificateService) private readonly certificates: DeviceCertificateService,
    @Optional() @Inject(HTTP_LOGGER) private readonly logger: Logger = pino(),
  ) {}

  @ApiRoute(operations.createProvisioningToken)
  async createToken(
    @Body() body: unknown,
    @Headers('host') host: string | undefined,
  ): Promise<CreatedProvisioningToken> {
    const { name, expiresIn, maxUses, board, tags } = parseBody(createProvisioningTokenBody, body);
    const now = this.clock.now();
    const created = await this.tokens.create(
      {
        name,
        expiresAt: expiresIn ? now + (parseDuration(expiresIn) as number) : null,
        maxUses: maxUses ?? null,
        board: board ?? null,
        tags: tags ?? null,
      },
      now,
    );
    const caFingerprint = this.tls.caFingerprint;
    return {
      ...created,
      token: pinnedProvisioningToken(created.token, caFingerprint),
      caFingerprint,
      serverUrl: this.tls.httpsUrlFor(host),
    };
  }

  /**
   * Public: the broker's URL is no secret (the server prints it), and the agent asks before it has
   * a session. A device that proves its secret here (HTTP Basic, as for downloads) is first made
   * known to the broker: this is how devices registered before a switch to Mosquitto, whose
   * secrets the server holds only as hashes, move there. Wrong credentials get the plain answer.
   */
  @ApiRoute(operations.getMqttEndpoint)
  async mqttEndpointFor(
    @Req() request: Request,
    @Res({ passthrough: true }) response: Response,
    @Headers('host') host: string | undefined,
  ): Promise<MqttEndpointAnswer> {
    const device = await authenticatedDeviceCredentials(this.deviceAuth, request, response);
    // The URL is worth answering even when the broker cannot be reached: the agent asks again on
    // its next refused attempt.
    if (device)
      await this.moveToBroker(device.deviceId, device.secret).catch((error: unknown) =>
        this.logger.warn(
          { err: error, deviceId: device.deviceId },
          'registering the device with the broker failed',
        ),
      );
    return { mqttUrl: this.mqttEndpoint.urlFor(host, request.secure) };
  }

  /** A revocation between the check and the registration would otherwise leave the device a way in. */
  private async moveToBroker(deviceId: string, secret: string): Promise<void> {
    if (!(await this.broker.ensureDevice(deviceId, secret))) return;
    if (!(await this.deviceRecords.isActive(deviceId))) await this.broker.revokeDevice(deviceId);
  }

  /** Public to the operator guard: the agent's provisioning token is checked here. */
  @ApiRoute(operations.provision)
  async provision(
    @Req() request: Request,
    @Headers('host') host: string | undefined,
    @Body() body: unknown,
  ): Promise<ProvisionedDevice> {
    const bearer = bearerToken(request);
    const token = bearer && splitProvisioningToken(bearer).secret;
    const refused = new BoardfleetError(
      'unauthorized',
      'the provisioning token is missing, unknown, revoked, expired or used up',
    );
    if (!token) throw refused;
    const grant = await this.tokens.find(token, this.clock.now());
    if (!grant) throw refused;
    const registration = parseBody(provisionBody, body);
    const device = withGrant(registration, grant);
    const certificateRequest = await this.certificates.checkProvisioningRequest(registration.csr);
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
      mqttUrl: this.mqttEndpoint.urlFor(host, request.secure),
      fleetPublicKeyPem: this.signingKey.publicKeyPem,
      ...(certificateRequest && {
        certificatePem: await this.certificates.issueAtProvisioning(created.device.id, certificateRequest),
      }),
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
