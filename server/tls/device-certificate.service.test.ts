// @peculiar/x509 resolves its ASN.1 handlers through tsyringe, which needs the metadata polyfill first.
import 'reflect-metadata';
import { createPrivateKey, generateKeyPairSync, webcrypto, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import pino from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { certificateRequest } from '../../device-agent/lib/device-certificate.ts';
import type { DeviceCertificate } from '../../protocol/schemas.ts';
import { ServerMetrics } from '../metrics/metrics.ts';
import { DeviceCertificateService } from './device-certificate.service.ts';
import {
  createFleetCa,
  DEVICE_CERTIFICATE_LIFETIME_MS,
  issueDeviceCertificate,
  type PemPair,
} from './fleet-certificates.ts';

const now = Date.parse('2026-12-06T00:00:00Z');
const HOUR_MS = 60 * 60 * 1000;

const deviceKeyPem = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
    format: 'pem',
    type: 'pkcs8',
  }) as string;

/** The same request with one bit of its signature flipped: still a request, proving nothing. */
function withBrokenSignature(csrPem: string): string {
  const der = Buffer.from(x509.PemConverter.decode(csrPem)[0] as ArrayBuffer);
  der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 1;
  return x509.PemConverter.encode(der, 'CERTIFICATE REQUEST');
}

async function rsaRequest(): Promise<string> {
  const algorithm = {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  };
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=dev-a',
    keys: keys as never,
    signingAlgorithm: algorithm,
  });
  return request.toString('pem');
}

function service(mode: 'off' | 'required', ca: PemPair, active = new Set(['dev-a', 'dev-b'])) {
  const published: Array<{ deviceId: string; message: DeviceCertificate }> = [];
  const metrics = new ServerMetrics();
  const certificates = new DeviceCertificateService({
    mode,
    ca: { issueDeviceCertificate: (deviceId, request) => issueDeviceCertificate(ca, deviceId, request, now) },
    devices: { isActive: async (deviceId) => active.has(deviceId) },
    publish: async (deviceId, message) => void published.push({ deviceId, message }),
    clock: { now: () => now },
    metrics,
    logger: pino({ level: 'silent' }),
  });
  return { certificates, published, metrics };
}

const renewal = (csr: string) => Buffer.from(JSON.stringify({ csr, at: now }));

describe('device certificates', () => {
  let ca: PemPair;
  let keyPem: string;

  beforeAll(async () => {
    ca = await createFleetCa(now);
    keyPem = deviceKeyPem();
  });

  it('issues a 7-day client certificate of the fleet CA for the key of a request, naming the device', async () => {
    const { certificates, metrics } = service('required', ca);
    const request = await certificates.checkProvisioningRequest(await certificateRequest(keyPem, 'any-name'));
    const pem = await certificates.issueAtProvisioning('dev-a', request as NonNullable<typeof request>);
    const certificate = new X509Certificate(pem);
    expect(certificate.subject).toBe('CN=dev-a');
    expect(certificate.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(certificate.checkPrivateKey(createPrivateKey(keyPem))).toBe(true);
    expect(certificate.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(certificate.ca).toBe(false);
    expect(Date.parse(certificate.validTo) - now).toBe(DEVICE_CERTIFICATE_LIFETIME_MS);
    expect(now - Date.parse(certificate.validFrom)).toBe(HOUR_MS);
    expect((await metrics.deviceCertificatesIssued.get()).values).toEqual([
      expect.objectContaining({ labels: { via: 'provisioning' }, value: 1 }),
    ]);
  });

  it('refuses a request whose signature does not verify, or for a key devices do not use', async () => {
    const { certificates } = service('required', ca);
    const good = await certificateRequest(keyPem, 'dev-a');
    await expect(certificates.issueForDevice('dev-a', withBrokenSignature(good))).rejects.toThrow(
      'the certificate request is not signed by the key it names: it proves no key',
    );
    await expect(certificates.issueForDevice('dev-a', await rsaRequest())).rejects.toThrow(
      'the certificate request is for a RSASSA-PKCS1-v1_5 key: a device key must be EC P-256 or P-384',
    );
    await expect(
      certificates.issueForDevice(
        'dev-a',
        '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
      ),
    ).rejects.toThrow(/^the certificate request is not a PKCS#10 request in PEM/);
  });

  it('takes any subject at provisioning, but only the device itself from a device that has an id', async () => {
    const { certificates } = service('required', ca);
    await expect(certificates.checkProvisioningRequest(undefined)).rejects.toThrow(
      'this fleet requires device certificates (BOARDFLEET_DEVICE_CERTIFICATES=required) and the agent sent no certificate request (csr): update the agent',
    );
    const forB = await certificateRequest(keyPem, 'dev-b');
    await expect(certificates.issueForDevice('dev-a', forB)).rejects.toThrow(
      'the certificate request names dev-b (subject CN), not device dev-a',
    );
    expect(new X509Certificate((await certificates.issueForDevice('dev-b', forB)) ?? '').subject).toBe(
      'CN=dev-b',
    );
  });

  it('issues nothing when the fleet does not require device certificates', async () => {
    const { certificates, published } = service('off', ca);
    const csr = await certificateRequest(keyPem, 'dev-a');
    expect(await certificates.checkProvisioningRequest(csr)).toBeNull();
    expect(await certificates.checkProvisioningRequest(undefined)).toBeNull();
    expect(await certificates.issueForDevice('dev-a', csr)).toBeNull();
    await certificates.renew('dev-a', renewal(csr));
    expect(published).toEqual([]);
  });

  it('answers a renewal over MQTT with a certificate for the device, and ignores revoked devices and bad requests', async () => {
    const { certificates, published, metrics } = service('required', ca, new Set(['dev-a']));
    await certificates.renew('dev-a', renewal(await certificateRequest(keyPem, 'dev-a')));
    expect(published).toEqual([
      { deviceId: 'dev-a', message: { certificatePem: expect.any(String), issuedAt: now } },
    ]);
    expect(new X509Certificate(published[0]?.message.certificatePem ?? '').subject).toBe('CN=dev-a');

    await certificates.renew('dev-b', renewal(await certificateRequest(keyPem, 'dev-b')));
    await certificates.renew('dev-a', renewal(await certificateRequest(keyPem, 'dev-c')));
    await certificates.renew('dev-a', Buffer.from('{"csr": "not a request"}'));
    expect(published).toHaveLength(1);
    expect((await metrics.invalidPayloads.get()).values).toEqual([
      expect.objectContaining({ labels: { channel: 'certificate-request', reason: 'schema' }, value: 1 }),
    ]);
  });
});
