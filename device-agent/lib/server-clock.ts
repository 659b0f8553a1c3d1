/**
 * Boards without a battery-backed clock (Raspberry Pi 3, Zero 2 W) start with the clock at the
 * image's build time at best (the init's floor), so TLS finds a server certificate issued since
 * then "not yet valid" and the agent could never connect. Before its first request the agent
 * takes the time from the server: the `Date` header of an HTTPS answer whose certificate chain it
 * checks against the CA it trusts, all but the dates (what it cannot check yet). It moves its
 * clock forward to it, never back: a server with a slow clock must not rewind its devices.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { request } from 'node:https';
import { rootCertificates, type DetailedPeerCertificate, type TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

/** Behind the server by less than this, the clock is left alone (the Date header has whole seconds). */
export const CLOCK_TOLERANCE_MS = 60_000;
const REQUEST_TIMEOUT_MS = 30_000;
/** At boot the agent often starts before the network is up: ask again every 5 s for 2 minutes. */
const RETRY_DELAYS_MS: readonly number[] = Array.from({ length: 24 }, () => 5_000);
/** Intermediate CAs followed at most, as OpenSSL's default depth would. */
const MAX_CHAIN = 8;

export interface ServerClockOptions {
  serverUrl: string;
  /** The pinned fleet CA; null: the system's CAs. */
  ca: string | null;
  logger: Logger;
  now?: () => number;
  setClock?: (time: Date) => Promise<void>;
  /** The waits between tries, in the background, while the server cannot be reached. */
  retryDelaysMs?: readonly number[];
}

interface ServerAnswer {
  date: Date;
  chain: X509Certificate[];
}

/**
 * Sets the clock from the server's when it is behind by more than {@link CLOCK_TOLERANCE_MS}.
 * Never throws: a clock left unset leaves the TLS errors that follow to say what is wrong. A
 * server that cannot be reached yet is asked again in the background, without holding the agent
 * up: once the clock is right, its next connection attempt gets through. Returns the time set
 * by this first try, or null.
 */
export async function catchUpWithServerClock(options: ServerClockOptions): Promise<Date | null> {
  const url = new URL(options.serverUrl);
  if (url.protocol !== 'https:') return null;
  let answer: ServerAnswer;
  try {
    answer = await serverDate(url);
  } catch (error) {
    options.logger.warn(
      `cannot read the time from ${url.origin} (${(error as Error).message}): asking again in the background`,
    );
    void askAgain(url, options);
    return null;
  }
  return catchUpTo(url, answer, options);
}

async function askAgain(url: URL, options: ServerClockOptions): Promise<void> {
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  for (const delay of delays) {
    await sleep(delay, undefined, { ref: false });
    const answer = await serverDate(url).catch(() => null);
    if (answer) return void (await catchUpTo(url, answer, options));
  }
  options.logger.warn(
    `no answer from ${url.origin} in ${delays.reduce((sum, delay) => sum + delay, 0) / 1000} s: the clock stays as it is`,
  );
}

async function catchUpTo(url: URL, answer: ServerAnswer, options: ServerClockOptions): Promise<Date | null> {
  const { ca, logger, now = Date.now, setClock = setSystemClock } = options;
  const localTime = now();
  const behindMs = answer.date.getTime() - localTime;
  if (behindMs <= CLOCK_TOLERANCE_MS) return null;
  const anchors = ca ? [new X509Certificate(ca)] : rootCertificates.map((pem) => new X509Certificate(pem));
  if (!chainsTo(answer.chain, anchors, url.hostname.replace(/^\[|\]$/g, ''))) {
    logger.warn(
      `the clock is ${Math.round(behindMs / 1000)} s behind ${url.origin}'s, but its certificate does not chain to the CA the agent trusts: not taking its time`,
    );
    return null;
  }
  try {
    await setClock(answer.date);
  } catch (error) {
    logger.warn(
      `the clock is ${Math.round(behindMs / 1000)} s behind ${url.origin}'s and cannot be set (${(error as Error).message}): TLS will find the server's certificate not yet valid`,
    );
    return null;
  }
  logger.info(
    { was: new Date(localTime).toISOString() },
    `the clock was ${Math.round(behindMs / 1000)} s behind ${url.origin}'s (no real-time clock?): set to ${answer.date.toISOString()}`,
  );
  return answer.date;
}

/** The server's `Date` and the certificates it presented, from a HEAD request verified by nothing yet. */
function serverDate(url: URL): Promise<ServerAnswer> {
  return new Promise((resolve, reject) => {
    const call = request(
      new URL('/healthz', url),
      { method: 'HEAD', rejectUnauthorized: false, agent: false, timeout: REQUEST_TIMEOUT_MS },
      (response) => {
        response.resume();
        const date = new Date(response.headers.date ?? '');
        if (Number.isNaN(date.getTime())) {
          reject(new Error('its answer has no Date header'));
          return;
        }
        resolve({ date, chain: presentedChain(response.socket as TLSSocket) });
      },
    );
    call.once('timeout', () => call.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS / 1000} s`)));
    call.once('error', reject);
    call.end();
  });
}

function presentedChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const seen = new Set<DetailedPeerCertificate>();
  let certificate: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
  while (certificate?.raw && !seen.has(certificate)) {
    seen.add(certificate);
    chain.push(new X509Certificate(certificate.raw));
    certificate = certificate.issuerCertificate;
  }
  return chain;
}

/**
 * Whether the first certificate names `host` and is signed, through CAs in `chain`, by one of
 * `anchors`. Validity dates are left out on purpose: they are what the wrong clock gets wrong.
 */
export function chainsTo(chain: X509Certificate[], anchors: X509Certificate[], host: string): boolean {
  let current = chain[0];
  if (!current || !(isIP(host) ? current.checkIP(host) : current.checkHost(host))) return false;
  const signedBy = (issuer: X509Certificate) =>
    current!.checkIssued(issuer) && current!.verify(issuer.publicKey);
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    if (anchors.some(signedBy)) return true;
    const issuer: X509Certificate | undefined = chain.find(
      (candidate) => candidate !== current && candidate.ca && signedBy(candidate),
    );
    if (!issuer) return false;
    current = issuer;
  }
  return false;
}

/** `date -u -s @SECONDS`, which busybox and GNU date both take; needs root. */
async function setSystemClock(time: Date): Promise<void> {
  await promisify(execFile)('date', ['-u', '-s', `@${Math.floor(time.getTime() / 1000)}`]);
}
