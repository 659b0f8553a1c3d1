import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createFleetCa,
  issueDeviceCertificate,
  type PemPair,
  verifyCertificateRequest,
} from '../../server/tls/fleet-certificates.ts';
import {
  certificateRequest,
  deviceCertificatePath,
  deviceKey,
  deviceKeyPath,
  loadDeviceCertificate,
  nextRenewalAt,
  RENEWAL_RETRY_MS,
  renewalDueAt,
  saveDeviceCertificate,
  unusableCertificate,
} from './device-certificate.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;
const issuedAt = Date.parse('2026-12-06T00:00:00Z');

const dataDir = () => mkdtempSync(join(tmpdir(), 'boardfleet-device-certificate-'));

describe('device certificate (agent side)', () => {
  let ca: PemPair;
  let keyPem: string;
  let certificatePem: string;

  beforeAll(async () => {
    ca = await createFleetCa(issuedAt);
    keyPem = deviceKey(dataDir());
    const request = await verifyCertificateRequest(await certificateRequest(keyPem, 'dev-a'));
    certificatePem = await issueDeviceCertificate(ca, 'dev-a', request, issuedAt);
  });

  it('makes the device key once, readable by its owner only, and keeps it', () => {
    const directory = dataDir();
    const key = deviceKey(directory);
    expect(key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(statSync(deviceKeyPath(directory)).mode & 0o777).toBe(0o600);
    expect(deviceKey(directory)).toBe(key);
  });

  it('asks for a certificate with a request the server can verify, naming the subject given', async () => {
    const request = await verifyCertificateRequest(await certificateRequest(keyPem, 'dev-a'));
    expect(request.commonName).toBe('dev-a');
  });

  it('keeps a certificate only for the key it has', () => {
    const directory = dataDir();
    expect(loadDeviceCertificate(directory)).toBeNull();
    saveDeviceCertificate(directory, certificatePem);
    expect(statSync(deviceCertificatePath(directory)).mode & 0o777).toBe(0o644);
    // The key of this directory is not the one the certificate was issued for.
    expect(loadDeviceCertificate(directory)).toBeNull();
    writeFileSync(deviceKeyPath(directory), keyPem, { mode: 0o600 });
    expect(loadDeviceCertificate(directory)).toBe(certificatePem);
    writeFileSync(deviceCertificatePath(directory), 'garbage');
    expect(loadDeviceCertificate(directory)).toBeNull();
    expect(readFileSync(deviceKeyPath(directory), 'utf8')).toBe(keyPem);
  });

  it('takes from the server only a certificate for its key, naming it, from the pinned CA', async () => {
    const stranger = await createFleetCa(issuedAt, 'Somebody else');
    const request = await verifyCertificateRequest(await certificateRequest(keyPem, 'dev-a'));
    const otherKey = deviceKey(dataDir());
    const forOtherKey = await issueDeviceCertificate(
      ca,
      'dev-a',
      await verifyCertificateRequest(await certificateRequest(otherKey, 'dev-a')),
      issuedAt,
    );
    expect(unusableCertificate(certificatePem, keyPem, 'dev-a', ca.certPem)).toBeNull();
    expect(unusableCertificate(certificatePem, keyPem, 'dev-a', null)).toBeNull();
    expect(unusableCertificate(forOtherKey, keyPem, 'dev-a', ca.certPem)).toBe(
      "it is not for this device's key",
    );
    expect(
      unusableCertificate(
        await issueDeviceCertificate(ca, 'dev-b', request, issuedAt),
        keyPem,
        'dev-a',
        ca.certPem,
      ),
    ).toBe('it is for CN=dev-b, not CN=dev-a');
    expect(
      unusableCertificate(
        await issueDeviceCertificate(stranger, 'dev-a', request, issuedAt),
        keyPem,
        'dev-a',
        ca.certPem,
      ),
    ).toBe('it is not signed by the pinned fleet CA');
    expect(
      unusableCertificate(
        '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n',
        keyPem,
        'dev-a',
        null,
      ),
    ).toBe('it is not a readable certificate');
  });

  it('is due for renewal with a third of its life left', () => {
    // Valid from an hour before it was issued, for seven days after.
    const life = 7 * DAY_MS + HOUR_MS;
    expect(renewalDueAt(certificatePem)).toBe(issuedAt - HOUR_MS + (2 * life) / 3);
  });

  it.each([
    { asked: 'never', lastRequestAt: null, next: 'when due' },
    { asked: 'for the previous certificate', lastRequestAt: issuedAt - DAY_MS, next: 'when due' },
    { asked: 'since it was due', lastRequestAt: 'due + 1 s', next: 'a retry later' },
  ] as const)('asks next $next when it asked $asked', ({ lastRequestAt, next }) => {
    const due = renewalDueAt(certificatePem);
    const asked = lastRequestAt === 'due + 1 s' ? due + 1000 : lastRequestAt;
    expect(nextRenewalAt(certificatePem, asked)).toBe(
      next === 'when due' ? due : due + 1000 + RENEWAL_RETRY_MS,
    );
  });
});
