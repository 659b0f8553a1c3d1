import type { Logger } from 'pino';
import { decodePayload } from '../../protocol/codec.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { DeviceCertificate } from '../../protocol/schemas.ts';
import type { ServerConfig } from '../config/config.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import { verifyCertificateRequest, type VerifiedCertificateRequest } from './fleet-certificates.ts';

/** How a device asked for its certificate, as the issued-certificates metric counts it. */
type IssuedVia = 'provisioning' | 'https' | 'mqtt';

/**
 * Device certificates (mTLS), when the fleet requires them: the fleet CA signs a key each device
 * made and keeps, at provisioning, over HTTPS for a device that proved its secret, and over MQTT
 * when the device renews. A request's signature proves the key; which device it is comes from
 * the server (the id it assigns, the secret checked, the topic the broker let the device use).
 */
export class DeviceCertificateService {
  constructor(
    private readonly options: {
      mode: ServerConfig['deviceCertificates'];
      ca: { issueDeviceCertificate(deviceId: string, request: VerifiedCertificateRequest): Promise<string> };
      devices: { isActive(deviceId: string): Promise<boolean> };
      /** Sends a renewed certificate to the device (QoS 1, so it waits in a session that is away). */
      publish(deviceId: string, message: DeviceCertificate): Promise<void>;
      clock: { now(): number };
      metrics: ServerMetrics;
      logger: Logger;
    },
  ) {}

  private get issuesCertificates(): boolean {
    return this.options.mode === 'required';
  }

  /**
   * Checks the request an agent provisions with, before the device exists, so that a bad one costs
   * the token no use. Any subject: the device has no id yet. Null when the fleet issues none.
   */
  async checkProvisioningRequest(csrPem: string | undefined): Promise<VerifiedCertificateRequest | null> {
    if (!this.issuesCertificates) return null;
    if (csrPem === undefined)
      throw new BoardfleetError(
        'invalid-request',
        'this fleet requires device certificates (BOARDFLEET_DEVICE_CERTIFICATES=required) and the agent sent no certificate request (csr): update the agent',
      );
    return verifyCertificateRequest(csrPem);
  }

  /** The certificate for a device just provisioned, for the request checked before. */
  issueAtProvisioning(deviceId: string, request: VerifiedCertificateRequest): Promise<string> {
    return this.issue(deviceId, request, 'provisioning');
  }

  /**
   * A certificate for a device that proved who it is: its request must name it (subject CN = its
   * id). Null when the fleet issues none.
   */
  async issueForDevice(deviceId: string, csrPem: string): Promise<string | null> {
    return this.issuesCertificates ? this.issueNamed(deviceId, csrPem, 'https') : null;
  }

  /**
   * A device's `certificate-request` message: answered on its `certificate` topic. The broker let
   * only that device publish there; it is looked up anyway, since a revocation may have come
   * after the message was sent. Never throws: a request that cannot be answered is logged.
   */
  async renew(deviceId: string, payload: Buffer): Promise<void> {
    const { metrics, logger } = this.options;
    metrics.messagesReceived.inc({ channel: 'certificate-request' });
    const decoded = decodePayload('certificate-request', payload);
    if (!decoded.ok) {
      metrics.invalidPayloads.inc({ channel: 'certificate-request', reason: decoded.reason });
      return void logger.warn(
        { deviceId, reason: decoded.reason, detail: decoded.detail },
        'invalid payload dropped',
      );
    }
    try {
      if (!this.issuesCertificates)
        return void logger.warn(
          { deviceId },
          'certificate request ignored: this fleet issues no device certificates (BOARDFLEET_DEVICE_CERTIFICATES=off)',
        );
      if (!(await this.options.devices.isActive(deviceId)))
        return void logger.warn({ deviceId }, 'certificate request of a revoked device ignored');
      const certificatePem = await this.issueNamed(deviceId, decoded.value.csr, 'mqtt');
      await this.options.publish(deviceId, { certificatePem, issuedAt: this.options.clock.now() });
    } catch (error) {
      logger.warn(
        { deviceId, err: error },
        `certificate request of device ${deviceId} not answered: ${(error as Error).message}`,
      );
    }
  }

  private async issueNamed(deviceId: string, csrPem: string, via: IssuedVia): Promise<string> {
    const request = await verifyCertificateRequest(csrPem);
    if (request.commonName !== deviceId)
      throw new BoardfleetError(
        'invalid-request',
        `the certificate request names ${request.commonName ?? 'no device'} (subject CN), not device ${deviceId}`,
      );
    return this.issue(deviceId, request, via);
  }

  private async issue(
    deviceId: string,
    request: VerifiedCertificateRequest,
    via: IssuedVia,
  ): Promise<string> {
    const certificatePem = await this.options.ca.issueDeviceCertificate(deviceId, request);
    this.options.metrics.deviceCertificatesIssued.inc({ via });
    this.options.logger.info({ deviceId, via }, 'device certificate issued');
    return certificatePem;
  }
}
