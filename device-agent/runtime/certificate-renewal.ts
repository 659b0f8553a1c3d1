import type { Logger } from 'pino';
import type { CertificateRequest, DeviceCertificate } from '../../protocol/schemas.ts';
import {
  certificateRequest,
  deviceKey,
  loadDeviceCertificate,
  nextRenewalAt,
  saveDeviceCertificate,
  unusableCertificate,
} from '../lib/device-certificate.ts';

/** What the MQTT session needs of the device's certificate. */
export interface ClientCertificate {
  /** Key and certificate to present on the next connection; null while the device has none. */
  current(): { key: string; cert: string } | null;
  /** The session is up: a new certificate is asked for over it when the current one is due. */
  online(publish: (request: CertificateRequest) => Promise<void>): void;
  offline(): void;
  /** The server's answer on the device's `certificate` topic. */
  received(message: DeviceCertificate): void;
  /** The broker refused the device: a certificate is asked for over HTTPS before the next attempt. */
  refused(): Promise<void>;
}

/** setTimeout waits at most 2^31-1 ms (about 24 days); a later renewal is scheduled again on the way. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The device's client certificate for fleets that require one: presented on every connection,
 * renewed over MQTT while the session is up (`certificate-request`, answered on `certificate`), and
 * fetched over HTTPS with the device's credentials when the broker refuses the device (it has none
 * yet, it expired while the device was away, or the fleet began to require them). A new
 * certificate is presented from the next connection on.
 */
export class CertificateRenewal implements ClientCertificate {
  private certificatePem: string | null;
  private lastRequestAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private publish: ((request: CertificateRequest) => Promise<void>) | null = null;

  constructor(
    private readonly options: {
      dataDir: string;
      deviceId: string;
      /** The pinned fleet CA; null: the broker alone judges the certificates the server sends. */
      ca: string | null;
      /** Asks the server over HTTPS, as the device; null when the fleet issues no certificates. */
      fetchCertificate(csrPem: string): Promise<string | null>;
      logger: Logger;
    },
  ) {
    this.certificatePem = loadDeviceCertificate(options.dataDir);
  }

  current(): { key: string; cert: string } | null {
    return this.certificatePem ? { key: this.key(), cert: this.certificatePem } : null;
  }

  online(publish: (request: CertificateRequest) => Promise<void>): void {
    this.publish = publish;
    this.schedule();
  }

  offline(): void {
    this.publish = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  received(message: DeviceCertificate): void {
    if (this.adopt(message.certificatePem)) this.schedule();
  }

  async refused(): Promise<void> {
    let certificatePem: string | null;
    try {
      certificatePem = await this.options.fetchCertificate(await this.request());
    } catch (error) {
      return void this.options.logger.debug({ err: error }, 'cannot ask the server for a device certificate');
    }
    if (certificatePem !== null) this.adopt(certificatePem);
  }

  private key(): string {
    return deviceKey(this.options.dataDir);
  }

  private request(): Promise<string> {
    return certificateRequest(this.key(), this.options.deviceId);
  }

  /** Keeps a certificate from the server when it is for this device's key and from the fleet CA. */
  private adopt(certificatePem: string): boolean {
    const { dataDir, deviceId, ca, logger } = this.options;
    const problem = unusableCertificate(certificatePem, this.key(), deviceId, ca);
    if (problem) {
      logger.warn({ problem }, `the device certificate the server sent is not used: ${problem}`);
      return false;
    }
    saveDeviceCertificate(dataDir, certificatePem);
    this.certificatePem = certificatePem;
    logger.info('new device certificate kept: presented from the next connection on');
    return true;
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!this.certificatePem || !this.publish) return;
    const delay = nextRenewalAt(this.certificatePem, this.lastRequestAt) - Date.now();
    this.timer = setTimeout(() => void this.renewIfDue(), Math.min(Math.max(delay, 0), MAX_TIMER_MS));
  }

  private async renewIfDue(): Promise<void> {
    this.timer = null;
    const publish = this.publish;
    if (!publish || !this.certificatePem) return;
    if (Date.now() >= nextRenewalAt(this.certificatePem, this.lastRequestAt)) {
      this.lastRequestAt = Date.now();
      try {
        await publish({ csr: await this.request(), at: Date.now() });
        this.options.logger.info('device certificate due for renewal: a new one asked for');
      } catch (error) {
        this.options.logger.warn(
          { err: error },
          'asking for a new device certificate failed; asked again later',
        );
      }
    }
    this.schedule();
  }
}
