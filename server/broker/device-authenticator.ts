import { createHmac, randomBytes } from 'node:crypto';
import { verifySecret } from '../common/secrets.ts';
import type { DeviceRepository } from '../devices/device.repository.ts';

/**
 * Checks device credentials. The scrypt check costs ~30 ms, so a successful check is remembered
 * (as an HMAC under a per-process key, in memory only) to keep reconnect storms cheap; revoking
 * a device forgets it.
 */
export class DeviceAuthenticator {
  private readonly cacheKey = randomBytes(32);
  private readonly verified = new Map<string, string>();

  constructor(private readonly devices: DeviceRepository) {}

  async authenticate(deviceId: string, secret: string): Promise<boolean> {
    const fingerprint = createHmac('sha256', this.cacheKey).update(secret).digest('base64url');
    const hash = await this.devices.findSecretHash(deviceId);
    if (hash === null) {
      this.verified.delete(deviceId);
      return false;
    }
    if (this.verified.get(deviceId) === fingerprint) return true;
    const ok = await verifySecret(secret, hash);
    if (ok) this.verified.set(deviceId, fingerprint);
    return ok;
  }

  forget(deviceId: string): void {
    this.verified.delete(deviceId);
  }
}
