/**
 * Signing and checking TUF documents with ed25519 keys, by Node's crypto: the server signs the
 * online roles, the CLI signs roots offline, and both check with the same code.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from 'node:crypto';
import { canonicalize } from '@tufjs/canonical-json';
import { BoardfleetError } from '../errors.ts';
import type { TufEnvelope, TufKey, TufRole, TufSignature, TufSigned } from './metadata.ts';

/** The bytes a signature covers: the canonical JSON (OLPC) of `signed`. */
export function canonicalBytes(signed: object): Buffer {
  return Buffer.from(canonicalize(signed));
}

/** A key's id: the sha256 of its canonical JSON, as the specification defines it. */
export function keyIdOf(key: TufKey): string {
  return createHash('sha256').update(canonicalBytes(key)).digest('hex');
}

/** The public TUF key of an ed25519 key (either half). */
export function tufKeyOf(key: KeyObject): TufKey {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const { x } = publicKey.export({ format: 'jwk' });
  return {
    keytype: 'ed25519',
    scheme: 'ed25519',
    keyval: { public: Buffer.from(x as string, 'base64url').toString('hex') },
  };
}

export function publicKeyObject(key: TufKey): KeyObject {
  const x = Buffer.from(key.keyval.public, 'hex').toString('base64url');
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

export function generateTufKey(): KeyObject {
  return generateKeyPairSync('ed25519').privateKey;
}

/** PKCS#8 PEM, as key files and the database keep private keys. */
export const privateKeyPem = (key: KeyObject) => key.export({ type: 'pkcs8', format: 'pem' }).toString();

/** Reads an ed25519 private key (PKCS#8 PEM); `source` names it in the error. */
export function readPrivateKey(pem: string | Buffer, source: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new BoardfleetError(
      'invalid-signing-key',
      `${source} is not a private key in PEM: ${(error as Error).message}`,
    );
  }
  if (key.asymmetricKeyType !== 'ed25519')
    throw new BoardfleetError(
      'invalid-signing-key',
      `${source} is an ${key.asymmetricKeyType} key; TUF keys here are ed25519`,
    );
  return key;
}

export function signatureBy(signed: TufSigned, privateKey: KeyObject): TufSignature {
  return {
    keyid: keyIdOf(tufKeyOf(privateKey)),
    sig: sign(null, canonicalBytes(signed), privateKey).toString('hex'),
  };
}

/** `envelope` with the signature of `privateKey` added, or replacing that key's earlier one. */
export function withSignature<Signed extends TufSigned>(
  envelope: TufEnvelope<Signed>,
  privateKey: KeyObject,
): TufEnvelope<Signed> {
  const signature = signatureBy(envelope.signed, privateKey);
  return {
    signed: envelope.signed,
    signatures: [...envelope.signatures.filter((other) => other.keyid !== signature.keyid), signature],
  };
}

/**
 * The keys of `role` whose signature on `envelope` checks out against `keys`, each once. A
 * signature by a key outside the role, or a broken one, counts for nothing.
 */
export function keysThatSigned(
  envelope: { signed: object; signatures: TufSignature[] },
  role: TufRole,
  keys: Record<string, TufKey>,
): string[] {
  const bytes = canonicalBytes(envelope.signed);
  const valid = new Set<string>();
  for (const { keyid, sig } of envelope.signatures) {
    const key = keys[keyid];
    if (!key || !role.keyids.includes(keyid)) continue;
    if (verifies(bytes, key, sig)) valid.add(keyid);
  }
  return [...valid];
}

function verifies(bytes: Buffer, key: TufKey, signatureHex: string): boolean {
  try {
    return verify(null, bytes, publicKeyObject(key), Buffer.from(signatureHex, 'hex'));
  } catch {
    // A key that is not a point on the curve: no signature by it is valid.
    return false;
  }
}
