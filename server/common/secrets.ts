import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { sha256 } from '../../lib/hash.ts';

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

/** scrypt cost: ~30 ms per check on these machines; devices authenticate once per connection. */
const SCRYPT = { N: 2 ** 14, r: 8, p: 1, keyLength: 32 };

/** A random secret with a prefix that says what it is (`bfd_` device, `bft_` operator, `bfp_` provisioning). */
export function generateSecret(prefix: 'bfd' | 'bft' | 'bfp'): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

export function generateId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Slow hash for device secrets: a stolen database does not give out working credentials. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(secret, salt, SCRYPT.keyLength, { ...SCRYPT, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64url');
  const actual = await scryptAsync(secret, Buffer.from(salt, 'base64url'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
    maxmem: 64 * 1024 * 1024,
  });
  return timingSafeEqual(actual, expected);
}

/**
 * Fast hash for long random bearer tokens (operator, provisioning): they cannot be guessed, and
 * a fast hash lets a request find its token by an indexed lookup.
 */
export function hashToken(token: string): string {
  return sha256(token);
}
