/**
 * The device's own key and certificate, for fleets that require device certificates (mTLS). The
 * key is made here and never leaves the device: the server gets certificate requests (PKCS#10)
 * signed with it, and signs certificates for it with the fleet CA.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomically } from '../../lib/atomic-file.ts';

export const deviceKeyPath = (dataDir: string) => join(dataDir, 'device.key');
export const deviceCertificatePath = (dataDir: string) => join(dataDir, 'device.pem');

/** The subject of the request sent at provisioning: the server names the device, it has no id yet. */
export const PROVISIONING_SUBJECT = 'boardfleet-device';

/** A request not answered is asked again this long after, while the certificate is due. */
export const RENEWAL_RETRY_MS = 10 * 60 * 1000;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** The device's private key (PKCS#8 PEM): made (EC P-256) on first use and kept 0600. */
export function deviceKey(dataDir: string): string {
  const path = deviceKeyPath(dataDir);
  if (existsSync(path)) return readFileSync(path, 'utf8');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  writeFileAtomically(path, pem, { mode: 0o600 });
  return pem;
}

/**
 * A PKCS#10 request for the key, subject CN = `commonName`, signed with the key: the signature is
 * the proof that the device holds it.
 */
export async function certificateRequest(keyPem: string, commonName: string): Promise<string> {
  // Loaded only when a request is made: @peculiar/x509 takes half a second to load, which agents
  // of fleets without device certificates need not spend on every start.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  const privateKey = createPrivateKey(keyPem);
  const der = (type: 'pkcs8' | 'spki') =>
    (type === 'pkcs8' ? privateKey : createPublicKey(privateKey)).export({ format: 'der', type });
  const keys = {
    privateKey: await webcrypto.subtle.importKey('pkcs8', der('pkcs8'), EC_P256, false, ['sign']),
    publicKey: await webcrypto.subtle.importKey('spki', der('spki'), EC_P256, true, ['verify']),
  };
  const request = await x509.Pkcs10CertificateRequestGenerator.create(
    { name: `CN=${commonName}`, keys, signingAlgorithm: EC_P256 },
    webcrypto as unknown as Parameters<typeof x509.Pkcs10CertificateRequestGenerator.create>[1],
  );
  const pem = request.toString('pem');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/** The certificate kept for the device's key, or null when there is none that goes with it. */
export function loadDeviceCertificate(dataDir: string): string | null {
  const path = deviceCertificatePath(dataDir);
  if (!existsSync(path) || !existsSync(deviceKeyPath(dataDir))) return null;
  const pem = readFileSync(path, 'utf8');
  try {
    return new X509Certificate(pem).checkPrivateKey(createPrivateKey(deviceKey(dataDir))) ? pem : null;
  } catch {
    // Unreadable: as good as none; the broker's refusal brings a new one (see CertificateRenewal).
    return null;
  }
}

/** Public (the certificate is no secret), beside the key. */
export function saveDeviceCertificate(dataDir: string, certificatePem: string): void {
  writeFileAtomically(deviceCertificatePath(dataDir), certificatePem, { mode: 0o644 });
}

/**
 * Why a certificate the server sent cannot replace the device's, or null when it can: it must be
 * for the device's key, name the device (CN), and be signed by the pinned fleet CA (when the
 * agent pins one; without, the broker is the judge).
 */
export function unusableCertificate(
  certificatePem: string,
  keyPem: string,
  deviceId: string,
  caPem: string | null,
): string | null {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(certificatePem);
  } catch {
    return 'it is not a readable certificate';
  }
  if (!certificate.checkPrivateKey(createPrivateKey(keyPem))) return "it is not for this device's key";
  if (!certificate.subject.split('\n').includes(`CN=${deviceId}`))
    return `it is for ${certificate.subject.replace(/\n/g, ', ')}, not CN=${deviceId}`;
  if (caPem !== null && !certificate.verify(new X509Certificate(caPem).publicKey))
    return 'it is not signed by the pinned fleet CA';
  return null;
}

/** When a certificate is due for renewal: with a third of its life left, as the server renews its own. */
export function renewalDueAt(certificatePem: string): number {
  const certificate = new X509Certificate(certificatePem);
  const notBefore = Date.parse(certificate.validFrom);
  const notAfter = Date.parse(certificate.validTo);
  return notAfter - (notAfter - notBefore) / 3;
}

/**
 * When to ask for a new certificate next: when the current one is due, and after a request made
 * since, {@link RENEWAL_RETRY_MS} later (the answer, or the request, was lost; or the server's
 * clock is behind and issued one already due, which must not make a loop).
 */
export function nextRenewalAt(certificatePem: string, lastRequestAt: number | null): number {
  const due = renewalDueAt(certificatePem);
  return lastRequestAt === null || lastRequestAt < due ? due : lastRequestAt + RENEWAL_RETRY_MS;
}
