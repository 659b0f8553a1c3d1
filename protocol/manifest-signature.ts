/**
 * Checking a manifest's signature, with Node's crypto: apart from manifest.ts, which the
 * dashboard shares (it checks signatures itself, with WebCrypto).
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { type ArtifactManifest, artifactManifestSchema } from './manifest.ts';

// A fleet has one key: parsing its PEM for every check cost a busy simulated fleet more than the checks.
let lastKey: { pem: string; key: KeyObject } | null = null;

function publicKeyOf(pem: string): KeyObject {
  if (lastKey?.pem !== pem) lastKey = { pem, key: createPublicKey(pem) };
  return lastKey.key;
}

/** Checks an ed25519 signature (base64) over the manifest text; returns the parsed manifest or null. */
export function verifyManifest(
  manifestText: string,
  signatureBase64: string,
  publicKeyPem: string,
): ArtifactManifest | null {
  const key = publicKeyOf(publicKeyPem);
  const valid = verify(null, Buffer.from(manifestText), key, Buffer.from(signatureBase64, 'base64'));
  if (!valid) return null;
  const parsed = artifactManifestSchema.safeParse(JSON.parse(manifestText));
  return parsed.success ? parsed.data : null;
}
