import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CertificateRequest } from '../../protocol/schemas.ts';
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
  RENEWAL_RETRY_MS,
  renewalDueAt,
  saveDeviceCertificate,
} from '../lib/device-certificate.ts';
import { CertificateRenewal } from './certificate-renewal.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

describe('certificate renewal', () => {
  let ca: PemPair;
  let dataDir: string;
  let requests: CertificateRequest[];
  let fetched: string[];
  let fetchAnswer: string | null;

  /** What the server does with a request: a certificate of the fleet CA for its key, issued now. */
  const answer = async (csr: string, deviceId = 'dev-a') =>
    issueDeviceCertificate(ca, deviceId, await verifyCertificateRequest(csr), Date.now());

  const renewal = () =>
    new CertificateRenewal({
      dataDir,
      deviceId: 'dev-a',
      ca: ca.certPem,
      fetchCertificate: async (csr) => {
        fetched.push(csr);
        return fetchAnswer;
      },
      logger: pino({ level: 'silent' }),
    });

  /** Lets the clock and the timers run to `at`. */
  const advanceTo = (at: number) => vi.advanceTimersByTimeAsync(at - Date.now());

  beforeAll(async () => {
    ca = await createFleetCa(Date.now());
  });
  beforeEach(() => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'Date'],
      now: Date.parse('2026-12-06T00:00:00Z'),
    });
    dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-renewal-'));
    requests = [];
    fetched = [];
    fetchAnswer = null;
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('has nothing to present until the server issued a certificate', () => {
    expect(renewal().current()).toBeNull();
  });

  it('asks over the session when a third of the life is left, again if unanswered, and presents the answer from then on', async () => {
    const first = await answer(await certificateRequest(deviceKey(dataDir), 'dev-a'));
    saveDeviceCertificate(dataDir, first);
    const certificates = renewal();
    expect(certificates.current()).toEqual({ key: deviceKey(dataDir), cert: first });
    certificates.online(async (request) => void requests.push(request));

    const due = renewalDueAt(first);
    await advanceTo(due - 1000);
    expect(requests).toHaveLength(0);
    await advanceTo(due);
    await vi.waitFor(() => expect(requests).toHaveLength(1));
    expect((await verifyCertificateRequest(requests[0]?.csr ?? '')).commonName).toBe('dev-a');

    await advanceTo(due + RENEWAL_RETRY_MS);
    await vi.waitFor(() => expect(requests).toHaveLength(2));

    const renewed = await answer(requests[1]?.csr ?? '');
    certificates.received({ certificatePem: renewed, issuedAt: Date.now() });
    expect(certificates.current()?.cert).toBe(renewed);
    expect(readFileSync(deviceCertificatePath(dataDir), 'utf8')).toBe(renewed);
    await advanceTo(Date.now() + 3 * DAY_MS);
    expect(requests).toHaveLength(2);
  });

  it('asks nothing while offline', async () => {
    saveDeviceCertificate(dataDir, await answer(await certificateRequest(deviceKey(dataDir), 'dev-a')));
    const certificates = renewal();
    certificates.online(async (request) => void requests.push(request));
    certificates.offline();
    await advanceTo(Date.now() + 7 * DAY_MS);
    expect(requests).toHaveLength(0);
  });

  it('keeps its certificate when the server sends one for another device or key', async () => {
    const first = await answer(await certificateRequest(deviceKey(dataDir), 'dev-a'));
    saveDeviceCertificate(dataDir, first);
    const certificates = renewal();
    const otherKey = deviceKey(mkdtempSync(join(tmpdir(), 'boardfleet-renewal-')));
    certificates.received({
      certificatePem: await answer(await certificateRequest(otherKey, 'dev-a')),
      issuedAt: Date.now(),
    });
    certificates.received({
      certificatePem: await answer(await certificateRequest(deviceKey(dataDir), 'dev-b'), 'dev-b'),
      issuedAt: Date.now(),
    });
    expect(certificates.current()?.cert).toBe(first);
  });

  it('asks over HTTPS when the broker refused the device, and presents what comes back', async () => {
    const certificates = renewal();
    await certificates.refused();
    expect(fetched).toHaveLength(1);
    expect(certificates.current()).toBeNull();

    fetchAnswer = await answer(await certificateRequest(deviceKey(dataDir), 'dev-a'));
    await certificates.refused();
    expect((await verifyCertificateRequest(fetched[1] ?? '')).commonName).toBe('dev-a');
    expect(certificates.current()?.cert).toBe(fetchAnswer);
  });
});
