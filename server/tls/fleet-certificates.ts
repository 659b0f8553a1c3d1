/**
 * The fleet's certificates, made with @peculiar/x509 over WebCrypto: the fleet CA, the server
 * certificates it issues, and device certificates for keys that never leave their devices. Pure
 * apart from key generation; storing and renewing them is FleetTls's (fleet-tls.ts).
 */
// @peculiar/x509 resolves its ASN.1 handlers through tsyringe, which needs the metadata polyfill first.
import 'reflect-metadata';
import { createHash, createPrivateKey, X509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import { BoardfleetError } from '../../protocol/errors.ts';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Ten years: the CA is pinned by every device, replacing it means touching each one. */
export const CA_LIFETIME_MS = 3650 * DAY_MS;
/** Ninety days, as public CAs issue: renewed when a third of it is left. */
export const SERVER_CERTIFICATE_LIFETIME_MS = 90 * DAY_MS;
/**
 * Seven days: a stolen device key is worth a week at most without its secret, and a device renews
 * over MQTT when a third of it is left, so one that is offline for a few days still comes back.
 */
export const DEVICE_CERTIFICATE_LIFETIME_MS = 7 * DAY_MS;
/** Leaf certificates start this much before they are issued, for clocks a little behind the issuer's. */
export const CLOCK_SKEW_ALLOWANCE_MS = 60 * 60 * 1000;
/** The curves a device key may use: what Node's TLS and every broker take for client certificates. */
const DEVICE_KEY_CURVES = ['P-256', 'P-384'];

export interface PemPair {
  certPem: string;
  keyPem: string;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return withNewline(x509.PemConverter.encode(der, 'PRIVATE KEY'));
}

/** Imports a PKCS#8 PEM key for signing: EC P-256/P-384 or RSA, the kinds operators' CAs use. */
async function importSigningKey(keyPem: string): Promise<{ key: CryptoKey; algorithm: webcrypto.Algorithm }> {
  const details = createPrivateKey(keyPem);
  const der = details.export({ format: 'der', type: 'pkcs8' });
  if (details.asymmetricKeyType === 'ec') {
    const curve = details.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
    const algorithm = { name: 'ECDSA', namedCurve: curve, hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
    return { key: await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']), algorithm };
  }
  if (details.asymmetricKeyType === 'rsa') {
    const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { key: await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']), algorithm };
  }
  throw new Error(`the CA key is ${details.asymmetricKeyType}: an EC (P-256, P-384) or RSA key is needed`);
}

/** PEM blocks end with a newline, so that a chain is their concatenation. */
function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

function serialNumber(): string {
  // Positive (top bit clear) and random, as RFC 5280 asks of issuers.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

/** A new self-signed fleet CA (EC P-256), allowed to sign end-entity certificates only. */
export async function createFleetCa(now: number, commonName = 'Boardfleet fleet CA'): Promise<PemPair> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${commonName}`,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + CA_LIFETIME_MS),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: withNewline(certificate.toString('pem')), keyPem: await exportKeyPem(keys.privateKey) };
}

/**
 * A server certificate for `names` (DNS names and IP addresses), signed by the CA. Its key is
 * new each time: a renewal also retires the old key.
 */
export async function issueServerCertificate(
  ca: PemPair,
  names: string[],
  now: number,
  lifetimeMs = SERVER_CERTIFICATE_LIFETIME_MS,
): Promise<PemPair> {
  const issuer = new x509.X509Certificate(ca.certPem);
  const signer = await importSigningKey(ca.keyPem);
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${names[0] ?? 'boardfleet-server'}`,
    issuer: issuer.subject,
    notBefore: new Date(now - CLOCK_SKEW_ALLOWANCE_MS),
    notAfter: new Date(Math.min(now + lifetimeMs, issuer.notAfter.getTime())),
    signingKey: signer.key,
    publicKey: keys.publicKey,
    signingAlgorithm: signer.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((name) => (isIP(name) ? { type: 'ip', value: name } : { type: 'dns', value: name })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(issuer),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: withNewline(certificate.toString('pem')), keyPem: await exportKeyPem(keys.privateKey) };
}

/** A certificate request whose signature was checked: its key is the requester's. */
export interface VerifiedCertificateRequest {
  publicKey: x509.PublicKey;
  /** The subject's common name; null when it has none. */
  commonName: string | null;
}

/**
 * Reads a PKCS#10 request (PEM) and checks its signature, which proves that the requester holds
 * the key. Only EC keys on the curves devices use are taken.
 */
export async function verifyCertificateRequest(csrPem: string): Promise<VerifiedCertificateRequest> {
  let request: x509.Pkcs10CertificateRequest;
  try {
    request = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (error) {
    throw new BoardfleetError(
      'invalid-request',
      `the certificate request is not a PKCS#10 request in PEM: ${(error as Error).message}`,
    );
  }
  const algorithm = request.publicKey.algorithm as { name: string; namedCurve?: string };
  if (algorithm.name !== 'ECDSA' || !DEVICE_KEY_CURVES.includes(algorithm.namedCurve ?? ''))
    throw new BoardfleetError(
      'invalid-request',
      `the certificate request is for a ${[algorithm.name, algorithm.namedCurve].filter(Boolean).join(' ')} key: a device key must be EC ${DEVICE_KEY_CURVES.join(' or ')}`,
    );
  if (!(await request.verify().catch(() => false)))
    throw new BoardfleetError(
      'invalid-request',
      'the certificate request is not signed by the key it names: it proves no key',
    );
  return { publicKey: request.publicKey, commonName: request.subjectName.getField('CN')[0] ?? null };
}

/**
 * A client certificate for device `deviceId` (subject CN, as the broker checks it against the
 * MQTT client id), for the key of a verified request, signed by the CA.
 */
export async function issueDeviceCertificate(
  ca: PemPair,
  deviceId: string,
  request: VerifiedCertificateRequest,
  now: number,
  lifetimeMs = DEVICE_CERTIFICATE_LIFETIME_MS,
): Promise<string> {
  const issuer = new x509.X509Certificate(ca.certPem);
  const signer = await importSigningKey(ca.keyPem);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${deviceId}`,
    issuer: issuer.subject,
    notBefore: new Date(now - CLOCK_SKEW_ALLOWANCE_MS),
    notAfter: new Date(Math.min(now + lifetimeMs, issuer.notAfter.getTime())),
    signingKey: signer.key,
    publicKey: request.publicKey,
    signingAlgorithm: signer.algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(issuer),
      await x509.SubjectKeyIdentifierExtension.create(request.publicKey),
    ],
  });
  return withNewline(certificate.toString('pem'));
}

/**
 * Whether a server certificate must be issued again: a third of its life or less left, issued by
 * another CA, or not covering exactly the configured names.
 */
export function needsNewServerCertificate(
  server: string,
  caPem: string,
  names: string[],
  now: number,
): boolean {
  const certificate = new X509Certificate(server);
  const notBefore = Date.parse(certificate.validFrom);
  const notAfter = Date.parse(certificate.validTo);
  if (now >= notAfter - (notAfter - notBefore) / 3) return true;
  if (!certificate.checkIssued(new X509Certificate(caPem))) return true;
  return sanNames(certificate).join(',') !== [...names].sort().join(',');
}

/** The certificate's DNS names and IP addresses, sorted. */
function sanNames(certificate: X509Certificate): string[] {
  return (certificate.subjectAltName ?? '')
    .split(', ')
    .map((entry) => entry.replace(/^(DNS|IP Address):/, ''))
    .filter(Boolean)
    .sort();
}

/** sha256 of the certificate's DER, hex: what provisioning tokens and `--ca` checks pin. */
export function certificateFingerprint(certPem: string): string {
  return createHash('sha256').update(new X509Certificate(certPem).raw).digest('hex');
}

/** Checks an operator's CA before it is used: a CA certificate, and the key matches it. */
export function checkCaPair(ca: PemPair, now: number): void {
  const certificate = new X509Certificate(ca.certPem);
  if (!certificate.ca) throw new Error('tls/ca.pem is not a CA certificate (basicConstraints CA:TRUE)');
  if (Date.parse(certificate.validTo) <= now) throw new Error(`tls/ca.pem expired on ${certificate.validTo}`);
  if (!certificate.checkPrivateKey(createPrivateKey(ca.keyPem)))
    throw new Error('tls/ca.key is not the private key of tls/ca.pem');
}
