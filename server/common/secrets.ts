import { createHmac, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { sha256 } from '../../lib/hash.ts';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

const HMAC_SCHEME = 'hmac-sha256';

/** A random secret with a prefix that says what it is (`bfd_` device, `bft_` operator, `bfp_` provisioning). */
export function generateSecret(prefix: 'bfd' | 'bft' | 'bfp'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function generateId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * The stored form of a device secret: HMAC-SHA-256 under the server's key. Device secrets are
 * 256-bit random values, so a slow hash would buy nothing against guessing and cost every
 * connection (and every wrong password an attacker sends) a slice of the shared thread pool;
 * the key keeps a stolen database from giving out working credentials without it.
 */
export function hashDeviceSecret(key: Buffer, secret: string): string {
  return `${HMAC_SCHEME}$${createHmac('sha256', key).update(secret).digest('base64url')}`;
}

/** Whether the stored hash is an older form that a successful check should replace. */
export function isLegacySecretHash(stored: string): boolean {
  return !stored.startsWith(`${HMAC_SCHEME}$`);
}

/**
 * Checks a device secret against its stored hash: the HMAC form, or the scrypt form of earlier
 * versions (about 30 ms; kept until each device's next successful check replaces it).
 */
export async function verifyDeviceSecret(key: Buffer, secret: string, stored: string): Promise<boolean> {
  if (!isLegacySecretHash(stored)) return safeEqual(hashDeviceSecret(key, secret), stored);
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(secret, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 64 * 1024 * 1024,
  });
  return timingSafeEqual(actual, expected);
}

/** Constant-time comparison of two strings (false, without comparing, when their lengths differ). */
export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

/**
 * Fast hash for long random bearer tokens (operator, provisioning): they cannot be guessed, and
 * a fast hash lets a request find its token by an indexed lookup.
 */
export function hashToken(token: string): string {
  return sha256(token);
}
