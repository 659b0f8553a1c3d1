import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer } from 'node:tls';
import { describe, expect, it } from 'vitest';
import {
  certificateFingerprint,
  checkCaPair,
  createFleetCa,
  issueServerCertificate,
  needsNewServerCertificate,
} from './fleet-certificates.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const now = Date.parse('2026-12-06T00:00:00Z');

/** Connects to a TLS server presenting `chain` and says whether the client trusting `caPem` accepted it. */
async function handshake(chain: { key: string; cert: string }, caPem: string, host: string): Promise<string> {
  const server = createServer(chain, (socket) => socket.end());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  try {
    return await new Promise<string>((resolve) => {
      const socket = connect({
        port,
        host: '127.0.0.1',
        servername: host === '127.0.0.1' ? undefined : host,
        ca: caPem,
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve('accepted');
      });
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
  } finally {
    server.close();
  }
}

describe('fleet certificates', () => {
  it('issues a server certificate that a client trusting the fleet CA accepts for every configured name', async () => {
    const ca = await createFleetCa(Date.now());
    const server = await issueServerCertificate(ca, ['localhost', '127.0.0.1'], Date.now());
    const chain = { key: server.keyPem, cert: server.certPem + ca.certPem };
    expect(await handshake(chain, ca.certPem, 'localhost')).toBe('accepted');
    expect(await handshake(chain, ca.certPem, '127.0.0.1')).toBe('accepted');
    expect(await handshake(chain, ca.certPem, 'elsewhere.example')).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    const stranger = await createFleetCa(Date.now(), 'Somebody else');
    expect(await handshake(chain, stranger.certPem, 'localhost')).not.toBe('accepted');
  });

  it('is renewed with a third of its life left, for other names, or under another CA', async () => {
    const ca = await createFleetCa(now);
    const names = ['boardfleet.lan', 'localhost', '10.0.0.2'];
    const { certPem } = await issueServerCertificate(ca, names, now);
    expect(needsNewServerCertificate(certPem, ca.certPem, [...names].reverse(), now + 50 * DAY_MS)).toBe(
      false,
    );
    expect(needsNewServerCertificate(certPem, ca.certPem, names, now + 61 * DAY_MS)).toBe(true);
    expect(needsNewServerCertificate(certPem, ca.certPem, ['localhost'], now)).toBe(true);
    const other = await createFleetCa(now);
    expect(needsNewServerCertificate(certPem, other.certPem, names, now)).toBe(true);
  });

  it("checks an operator's CA: a CA certificate whose key matches", async () => {
    const ca = await createFleetCa(now);
    const other = await createFleetCa(now);
    expect(() => checkCaPair(ca, now)).not.toThrow();
    expect(() => checkCaPair({ certPem: ca.certPem, keyPem: other.keyPem }, now)).toThrow(
      /not the private key/,
    );
    const leaf = await issueServerCertificate(ca, ['localhost'], now);
    expect(() => checkCaPair(leaf, now)).toThrow(/not a CA certificate/);
    expect(certificateFingerprint(ca.certPem)).toMatch(/^[0-9a-f]{64}$/);
  });
});
