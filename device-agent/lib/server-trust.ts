/**
 * Whom the agent trusts to be its server: the fleet CA, pinned. It comes from `--ca`, or from the
 * server's own TLS handshake checked against the fingerprint the provisioning token carries, and
 * is kept in the data dir; from then on every request and the MQTT session verify the server's
 * certificate against it (name included), and nothing is fetched over a channel that was not.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { connect, type DetailedPeerCertificate } from 'node:tls';
import type { Logger } from 'pino';
import { BoardfleetError } from '../../protocol/errors.ts';
import { writeFileAtomically } from '../../lib/atomic-file.ts';
import { CERTIFICATE_REFUSED, fetchTrusting } from '../../lib/trusting-fetch.ts';

export interface ServerTrust {
  /** `fetch` that verifies the server against the pinned CA (the system's CAs when none is pinned). */
  fetch: typeof fetch;
  /** The pinned CA for MQTT over TLS; null: the system's CAs. */
  ca: string | null;
}

const HANDSHAKE_TIMEOUT_MS = 30_000;

export const pinnedCaPath = (dataDir: string) => join(dataDir, 'fleet-ca.pem');

export function fingerprintOf(certificate: Buffer | string): string {
  const der = typeof certificate === 'string' ? new X509Certificate(certificate).raw : certificate;
  return createHash('sha256').update(der).digest('hex');
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * The trust the agent works with. `caFile` (the operator's `--ca`) wins; else the CA kept from an
 * earlier start; else, with a pin, the CA the server presents, if its fingerprint is the pin. A pin
 * that matches neither the given nor the kept CA stops the agent.
 */
export async function establishServerTrust(options: {
  serverUrl: string;
  dataDir: string;
  caFile?: string;
  pin: string | null;
  logger: Logger;
}): Promise<ServerTrust> {
  const { serverUrl, dataDir, caFile, pin, logger } = options;
  const url = new URL(serverUrl);
  const kept = existsSync(pinnedCaPath(dataDir)) ? readFileSync(pinnedCaPath(dataDir), 'utf8') : null;
  let ca: string | null = null;
  if (caFile) {
    ca = readCaFile(caFile);
    refuseUnpinned(ca, pin, `--ca ${caFile}`);
  } else if (kept) {
    ca = kept;
    refuseUnpinned(ca, pin, pinnedCaPath(dataDir));
  } else if (pin && url.protocol === 'https:') {
    ca = await caPresentedBy(url, pin);
    logger.info({ caFingerprint: pin }, `fleet CA pinned (sha256 ${pin}), kept in ${pinnedCaPath(dataDir)}`);
  } else if (pin && !LOOPBACK_HOSTS.has(url.hostname)) {
    throw new BoardfleetError(
      'invalid-config',
      `the provisioning token pins the fleet CA, but --server ${serverUrl} is plain HTTP: give the server's https:// address (port 8443 by default)`,
    );
  }
  if (ca && ca !== kept) writeFileAtomically(pinnedCaPath(dataDir), ca, { mode: 0o644 });
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname))
    logger.warn(
      { server: serverUrl },
      `${serverUrl} is plain HTTP: the device's secret travels in clear; use the server's https:// address`,
    );
  return { fetch: verifyingFetch(ca, serverUrl, caFile ?? (ca ? pinnedCaPath(dataDir) : null)), ca };
}

function readCaFile(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
    new X509Certificate(pem);
  } catch (error) {
    throw new BoardfleetError(
      'invalid-config',
      `--ca ${path} is not a readable PEM certificate: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  return pem;
}

function refuseUnpinned(ca: string, pin: string | null, origin: string): void {
  if (pin === null || fingerprintOf(ca) === pin) return;
  throw new BoardfleetError(
    'untrusted-server',
    `the fleet CA in ${origin} (sha256 ${fingerprintOf(ca)}) is not the one the provisioning token pins (sha256 ${pin}): refusing to connect`,
  );
}

/**
 * The CA certificate in the chain the server presents whose fingerprint is the pin. Only the
 * certificate is taken from this unverified handshake, and only because it matches the pin;
 * every connection after it verifies the server against it.
 */
async function caPresentedBy(url: URL, pin: string): Promise<string> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const chain = await new Promise<DetailedPeerCertificate[]>((resolve, reject) => {
    const socket = connect({
      host,
      port: Number(url.port || 443),
      ...(isIP(host) ? {} : { servername: host }),
      rejectUnauthorized: false,
      timeout: HANDSHAKE_TIMEOUT_MS,
    });
    socket.once('secureConnect', () => {
      const certificates: DetailedPeerCertificate[] = [];
      let certificate: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      while (certificate?.raw && !certificates.includes(certificate)) {
        certificates.push(certificate);
        certificate = certificate.issuerCertificate;
      }
      socket.destroy();
      resolve(certificates);
    });
    socket.once('timeout', () => socket.destroy(new Error('no TLS handshake in time')));
    socket.once('error', (error) =>
      reject(new BoardfleetError('server-unreachable', `cannot reach ${url.origin}: ${error.message}`)),
    );
  });
  const match = chain.find((certificate) => fingerprintOf(certificate.raw) === pin);
  if (!match) {
    const top = chain.at(-1);
    throw new BoardfleetError(
      'untrusted-server',
      `${url.origin} does not present the fleet CA the provisioning token pins (sha256 ${pin}); ` +
        `its chain ends at ${top ? `"${top.subject?.CN ?? '?'}" (sha256 ${fingerprintOf(top.raw)})` : 'nothing'}: refusing to connect`,
    );
  }
  return new X509Certificate(match.raw).toString();
}

/** `fetch` trusting only `ca`; a certificate refusal says which trust refused it. */
function verifyingFetch(ca: string | null, serverUrl: string, caSource: string | null): typeof fetch {
  const call = ca ? fetchTrusting(ca) : fetch;
  return (async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    try {
      return await call(input, init);
    } catch (error) {
      const cause = (error as { cause?: NodeJS.ErrnoException }).cause;
      if (!cause?.code || !CERTIFICATE_REFUSED.test(cause.code)) throw error;
      throw new BoardfleetError(
        'untrusted-server',
        `${new URL(serverUrl).origin} is not trusted: ${cause.message} ` +
          `(the agent trusts ${caSource ? `only the fleet CA in ${caSource}` : "the system's CAs: give --ca or a provisioning token pinning the fleet CA"})`,
        { cause: error },
      );
    }
  }) as typeof fetch;
}
