import {
  generateSecret,
  hashDeviceSecret,
  isLegacySecretHash,
  verifyDeviceSecret,
} from '../common/secrets.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';
import type { ServerMetrics } from '../metrics/metrics.ts';
import type { AuthRateLimiter } from './auth-rate-limiter.ts';

/** Accepted, refused, or refused unchecked because the id or the address must wait (`retryAfterMs`). */
export type DeviceAuthResult = { accepted: true } | { accepted: false; retryAfterMs: number | null };

/**
 * Checks device credentials (MQTT CONNECT and HTTP Basic alike): an HMAC under the server's key,
 * so a check costs microseconds and nothing of the shared thread pool. An unknown or revoked id
 * costs the same lookup, HMAC and comparison as a known one, so answer times do not tell which ids
 * exist. Failed attempts are slowed down by the shared {@link AuthRateLimiter}.
 */
export class DeviceAuthenticator {
  /** The hash of a secret nobody knows, compared against when the id has none. */
  private readonly unknownDeviceHash: string;

  constructor(
    private readonly devices: DeviceRepository,
    private readonly key: Buffer,
    private readonly limiter: AuthRateLimiter,
    private readonly metrics: ServerMetrics,
  ) {
    this.unknownDeviceHash = hashDeviceSecret(key, generateSecret('bfd'));
  }

  /** The form a new device's secret is stored in. */
  hashSecret(secret: string): string {
    return hashDeviceSecret(this.key, secret);
  }

  /** `source` is the address the attempt comes from (the MQTT socket's or the HTTP request's). */
  async check(deviceId: string, secret: string, source: string): Promise<DeviceAuthResult> {
    const limited = this.refuseIfLimited(deviceId, source);
    if (limited) return limited;
    const stored = await this.devices.findSecretHash(deviceId);
    // Asked again: failures of parallel attempts recorded during the lookup count too.
    const limitedMeanwhile = this.refuseIfLimited(deviceId, source);
    if (limitedMeanwhile) return limitedMeanwhile;
    const matches = await verifyDeviceSecret(this.key, secret, stored ?? this.unknownDeviceHash);
    if (!matches || stored === null) {
      this.limiter.recordFailure(deviceId, source);
      this.metrics.deviceAuthRefused.inc({ reason: 'bad-credentials' });
      return { accepted: false, retryAfterMs: null };
    }
    this.limiter.recordSuccess(deviceId);
    if (isLegacySecretHash(stored))
      await this.devices.replaceSecretHash(deviceId, stored, this.hashSecret(secret));
    return { accepted: true };
  }

  private refuseIfLimited(deviceId: string, source: string): DeviceAuthResult | null {
    const verdict = this.limiter.check(deviceId, source);
    if (!verdict.limited) return null;
    this.metrics.deviceAuthRefused.inc({ reason: 'rate-limited' });
    return { accepted: false, retryAfterMs: verdict.retryAfterMs };
  }

  /** Whether the credentials are accepted; a rate-limited attempt is simply refused (MQTT). */
  async authenticate(deviceId: string, secret: string, source: string): Promise<boolean> {
    return (await this.check(deviceId, secret, source)).accepted;
  }
}
