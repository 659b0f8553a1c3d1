import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { writeFileAtomically } from '../../lib/atomic-file.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ServerKeyRepository } from '../auth/server-key.repository.ts';
import type { Clock } from '../common/clock.ts';
import { urlHostOf } from '../common/request-host.ts';
import {
  certificateFingerprint,
  checkCaPair,
  createFleetCa,
  issueDeviceCertificate,
  issueServerCertificate,
  needsNewServerCertificate,
  type PemPair,
  type VerifiedCertificateRequest,
} from './fleet-certificates.ts';

/** Renewal is checked this often; a certificate is renewed with a third of its 90 days left. */
const RENEWAL_CHECK_MS = 12 * 60 * 60 * 1000;

export const tlsDirectory = (dataDir: string) => join(dataDir, 'tls');

/**
 * The fleet CA and this server's certificate. The CA lives in the database, so that replicas
 * sharing it issue under one CA that every device pins; `tls/ca.pem` is its public copy for
 * operators and images. An operator's own CA is taken from `tls/ca.pem` with `tls/ca.key` at the
 * first start. Each replica issues its own server certificate, for `names`, and renews it in place
 * (listeners take the new one through `onRenewed`) before it expires.
 */
export class FleetTls {
  private server: PemPair;
  private timer: NodeJS.Timeout | null = null;
  /** Set once HTTPS listens. */
  private httpsPort: number | null = null;
  private readonly listeners: Array<(context: SecureContextOptions) => void> = [];

  private constructor(
    private readonly ca: PemPair,
    server: PemPair,
    /** The server certificate was issued at this start, replacing the saved one (a broker next to it reads the new one). */
    readonly issuedAtStart: boolean,
    private readonly options: { dataDir: string; names: string[]; clock: Clock; logger: Logger },
  ) {
    this.server = server;
  }

  static async open(options: {
    dataDir: string;
    names: string[];
    keys: ServerKeyRepository;
    clock: Clock;
    logger: Logger;
  }): Promise<FleetTls> {
    const { dataDir, keys, clock, logger } = options;
    const directory = tlsDirectory(dataDir);
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const stored = await keys.loadOrStore(
      'fleet-ca',
      async () =>
        JSON.stringify(
          (await operatorCa(directory, clock.now(), logger)) ?? (await createFleetCa(clock.now())),
        ),
      clock.now(),
    );
    const ca = JSON.parse(stored) as PemPair;
    writeFileAtomically(join(directory, 'ca.pem'), ca.certPem, { mode: 0o644 });
    const saved = savedServerCertificate(directory, ca, options.names, clock.now());
    const tls = new FleetTls(
      ca,
      saved ?? (await issueServerCertificate(ca, options.names, clock.now())),
      saved === null,
      options,
    );
    tls.save();
    return tls;
  }

  /** The CA certificate devices pin. */
  get caPem(): string {
    return this.ca.certPem;
  }

  /** sha256 (hex) of the CA certificate: what provisioning tokens carry. */
  get caFingerprint(): string {
    return certificateFingerprint(this.ca.certPem);
  }

  /** A device's client certificate for the key of a verified request, dated by the server's clock. */
  issueDeviceCertificate(deviceId: string, request: VerifiedCertificateRequest): Promise<string> {
    return issueDeviceCertificate(this.ca, deviceId, request, this.options.clock.now());
  }

  /** Key and chain (server certificate, then the CA: a pinning agent finds the CA in it). */
  secureContext(): SecureContextOptions {
    return { key: this.server.keyPem, cert: this.server.certPem + this.ca.certPem };
  }

  /** HTTPS listens on `port` from now on. */
  servingHttpsOn(port: number): void {
    this.httpsPort = port;
  }

  /** The HTTPS address for agents, at the host name a request used (the first TLS name without one). */
  httpsUrlFor(requestHost: string | undefined): string {
    const host = urlHostOf(requestHost, this.options.names[0] ?? 'localhost');
    return `https://${host}:${this.httpsPort ?? 8443}`;
  }

  onRenewed(listener: (context: SecureContextOptions) => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    this.timer = setInterval(() => void this.renewIfDue(), RENEWAL_CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Issues a new server certificate when the current one is due, and hands it to the listeners. */
  async renewIfDue(): Promise<boolean> {
    const { names, clock, logger } = this.options;
    if (!needsNewServerCertificate(this.server.certPem, this.ca.certPem, names, clock.now())) return false;
    try {
      this.server = await issueServerCertificate(this.ca, names, clock.now());
      this.save();
      for (const listener of this.listeners) listener(this.secureContext());
      logger.info({ names }, 'server certificate renewed');
      return true;
    } catch (error) {
      logger.error({ err: error }, 'renewing the server certificate failed; the current one stays');
      return false;
    }
  }

  /** The certificate for operators (and a broker next to the server) to use. */
  private save(): void {
    saveServerCertificate(serverCertificateFiles(tlsDirectory(this.options.dataDir)), this.server, this.ca);
  }
}

/** The operator's CA, when tls/ca.pem and tls/ca.key are there at the first start. */
async function operatorCa(directory: string, now: number, logger: Logger): Promise<PemPair | null> {
  const certPath = join(directory, 'ca.pem');
  const keyPath = join(directory, 'ca.key');
  if (!existsSync(certPath) || !existsSync(keyPath)) return null;
  const ca = { certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
  checkCaPair(ca, now);
  logger.info({ path: certPath }, `fleet CA taken from ${certPath}; ${keyPath} may now be kept offline`);
  return ca;
}

/** The saved server certificate while it is still good for these names and this CA. */
function savedServerCertificate(
  directory: string,
  ca: PemPair,
  names: string[],
  now: number,
): PemPair | null {
  const { certFile, keyFile } = serverCertificateFiles(directory);
  if (!existsSync(certFile) || !existsSync(keyFile)) return null;
  const saved = { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
  const leaf = `${saved.certPem.slice(0, saved.certPem.indexOf('-----END CERTIFICATE-----') + 25)}\n`;
  return needsNewServerCertificate(leaf, ca.certPem, names, now) ? null : { ...saved, certPem: leaf };
}

/** The files in a server's `tls/` folder a broker next to it presents to devices. */
export interface ServerCertificateFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

const serverCertificateFiles = (directory: string): ServerCertificateFiles => ({
  certFile: join(directory, 'server.pem'),
  keyFile: join(directory, 'server.key'),
  caFile: join(directory, 'ca.pem'),
});

/** The key (0600) and the chain, server certificate then CA (a pinning agent finds the CA in it). */
function saveServerCertificate(files: ServerCertificateFiles, server: PemPair, ca: PemPair): void {
  writeFileAtomically(files.keyFile, server.keyPem, { mode: 0o600 });
  writeFileAtomically(files.certFile, server.certPem + ca.certPem, { mode: 0o644 });
}

/**
 * Makes sure a broker next to the server has a certificate to present before the server first
 * starts: when the data folder has none, a new fleet CA is written as `tls/ca.pem` with `tls/ca.key`
 * (which the server's first start takes as the operator's CA) and a server certificate for `names`
 * from it. Once the server runs, it renews `server.pem` in place.
 */
export async function ensureServerCertificateFiles(
  dataDir: string,
  names: string[],
  now: number,
): Promise<ServerCertificateFiles & { created: boolean }> {
  const directory = tlsDirectory(dataDir);
  const files = serverCertificateFiles(directory);
  if (existsSync(files.certFile) && existsSync(files.keyFile)) return { ...files, created: false };
  const caKeyFile = join(directory, 'ca.key');
  if (existsSync(files.caFile) && !existsSync(caKeyFile))
    throw new BoardfleetError(
      'conflict',
      `${files.caFile} is there but not ${files.certFile}: start the server once with this data folder (it writes its certificate there), then run this again`,
    );
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  let ca: PemPair;
  if (existsSync(files.caFile)) {
    ca = { certPem: readFileSync(files.caFile, 'utf8'), keyPem: readFileSync(caKeyFile, 'utf8') };
    checkCaPair(ca, now);
  } else {
    ca = await createFleetCa(now);
    writeFileAtomically(caKeyFile, ca.keyPem, { mode: 0o600 });
    writeFileAtomically(files.caFile, ca.certPem, { mode: 0o644 });
  }
  saveServerCertificate(files, await issueServerCertificate(ca, names, now), ca);
  return { ...files, created: true };
}
