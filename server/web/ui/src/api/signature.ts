/** Whether an artifact's manifest signature checks out against the fleet key, verified here in the browser. */
export type SignatureStatus = 'valid' | 'invalid' | 'unverifiable';

function pemToDer(pem: string): ArrayBuffer {
  const base64 = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, '').replace(/\s+/g, '');
  return Uint8Array.from(atob(base64), (char) => char.charCodeAt(0)).buffer;
}

/** Imports the fleet's ed25519 public key (SPKI PEM); null where the browser has no Ed25519. */
export async function importFleetKey(publicKeyPem: string): Promise<CryptoKey | null> {
  try {
    return await crypto.subtle.importKey('spki', pemToDer(publicKeyPem), { name: 'Ed25519' }, false, [
      'verify',
    ]);
  } catch {
    return null;
  }
}

/** Checks the ed25519 signature (base64) over the manifest text, as the agents do before installing. */
export async function verifyManifestSignature(
  key: CryptoKey | null,
  manifest: string,
  signatureBase64: string,
): Promise<SignatureStatus> {
  if (!key) return 'unverifiable';
  try {
    const signature = Uint8Array.from(atob(signatureBase64), (char) => char.charCodeAt(0));
    const valid = await crypto.subtle.verify('Ed25519', key, signature, new TextEncoder().encode(manifest));
    return valid ? 'valid' : 'invalid';
  } catch {
    return 'invalid';
  }
}
