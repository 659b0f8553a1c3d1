import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFleetCa, issueServerCertificate, type PemPair } from '../../server/tls/fleet-certificates.ts';
import { catchUpWithServerClock, chainsTo } from './server-clock.ts';

const HOUR_MS = 3_600_000;

/** A real HTTPS server whose certificate, issued by `ca`, starts two days from now: "not yet valid" here. */
async function serverIssuedAhead(ca: PemPair): Promise<{ server: Server; url: string; chain: string }> {
  const certificate = await issueServerCertificate(ca, ['127.0.0.1'], Date.now() + 48 * HOUR_MS);
  const server = createServer(
    { cert: certificate.certPem + ca.certPem, key: certificate.keyPem },
    (_request, response) => response.writeHead(200).end(),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `https://127.0.0.1:${port}`, chain: certificate.certPem };
}

function capturedLogger(): {
  logger: pino.Logger;
  lines: () => string;
  logged: (pattern: RegExp) => Promise<void>;
} {
  let text = '';
  const sink = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      sink.emit('line');
      done();
    },
  });
  const logged = (pattern: RegExp) =>
    new Promise<void>((resolve) => {
      const check = () => pattern.test(text) && (sink.off('line', check), resolve());
      sink.on('line', check);
      check();
    });
  return { logger: pino({ level: 'info' }, sink), lines: () => text, logged };
}

/** A port nothing listens on, and the https server that will listen there later. */
async function serverNotYetListening(ca: PemPair) {
  const late = await serverIssuedAhead(ca);
  const { port } = late.server.address() as AddressInfo;
  await new Promise((resolve) => late.server.close(resolve));
  return {
    ...late,
    listen: () => new Promise<void>((resolve) => late.server.listen(port, '127.0.0.1', resolve)),
  };
}

describe('catchUpWithServerClock', () => {
  let fleetCa: PemPair;
  let otherCa: PemPair;
  let fleet: Awaited<ReturnType<typeof serverIssuedAhead>>;

  beforeAll(async () => {
    fleetCa = await createFleetCa(Date.now());
    otherCa = await createFleetCa(Date.now(), 'Somebody else');
    fleet = await serverIssuedAhead(fleetCa);
  });
  afterAll(() => fleet.server.close());

  async function catchUp(options: {
    behindMs: number;
    ca?: () => string;
    setClock?: (time: Date) => Promise<void>;
  }) {
    const set: Date[] = [];
    const { logger, lines } = capturedLogger();
    const result = await catchUpWithServerClock({
      serverUrl: fleet.url,
      ca: options.ca ? options.ca() : fleetCa.certPem,
      logger,
      now: () => Date.now() - options.behindMs,
      setClock:
        options.setClock ??
        (async (time) => {
          set.push(time);
        }),
    });
    return { result, set, log: lines() };
  }

  it("moves a clock that is hours behind to the server's Date, trusting a certificate not yet valid to it", async () => {
    const { result, set, log } = await catchUp({ behindMs: 5 * HOUR_MS });
    expect(set).toHaveLength(1);
    expect(Math.abs(set[0]!.getTime() - Date.now())).toBeLessThan(5_000);
    expect(result).toEqual(set[0]);
    expect(log).toMatch(
      /the clock was (17999|1800\d) s behind https:\/\/127\.0\.0\.1:\d+'s \(no real-time clock\?\)/,
    );
  });

  it.each([
    { case: 'in step with the server', behindMs: 0 },
    { case: 'behind by less than the tolerance', behindMs: 30_000 },
    { case: 'ahead of the server (never rewound)', behindMs: -5 * HOUR_MS },
  ])('leaves a clock $case alone', async ({ behindMs }) => {
    const { result, set } = await catchUp({ behindMs });
    expect(result).toBeNull();
    expect(set).toEqual([]);
  });

  it('takes no time from a server whose certificate another CA signed', async () => {
    const { result, set, log } = await catchUp({ behindMs: 5 * HOUR_MS, ca: () => otherCa.certPem });
    expect(result).toBeNull();
    expect(set).toEqual([]);
    expect(log).toContain('does not chain to the CA the agent trusts: not taking its time');
  });

  it('says what will fail when the clock cannot be set', async () => {
    const { result, log } = await catchUp({
      behindMs: 5 * HOUR_MS,
      setClock: () => Promise.reject(new Error('date: cannot set date: Operation not permitted')),
    });
    expect(result).toBeNull();
    expect(log).toContain('cannot be set (date: cannot set date: Operation not permitted)');
    expect(log).toContain("TLS will find the server's certificate not yet valid");
  });

  it('asks again in the background while the server cannot be reached, as at boot before the network is up', async () => {
    const late = await serverNotYetListening(fleetCa);
    const { logger, lines } = capturedLogger();
    let clockSet!: (time: Date) => void;
    const set = new Promise<Date>((resolve) => (clockSet = resolve));
    const first = await catchUpWithServerClock({
      serverUrl: late.url,
      ca: fleetCa.certPem,
      logger,
      now: () => Date.now() - 5 * HOUR_MS,
      setClock: async (time) => clockSet(time),
      retryDelaysMs: Array.from({ length: 500 }, () => 20),
    });
    expect(first).toBeNull();
    expect(lines()).toContain('asking again in the background');
    await late.listen();
    try {
      expect(Math.abs((await set).getTime() - Date.now())).toBeLessThan(5_000);
    } finally {
      late.server.close();
    }
  });

  it('gives up asking after its last wait, saying so', async () => {
    const never = await serverNotYetListening(fleetCa);
    const { logger, logged } = capturedLogger();
    await catchUpWithServerClock({
      serverUrl: never.url,
      ca: fleetCa.certPem,
      logger,
      now: () => Date.now() - 5 * HOUR_MS,
      setClock: () => Promise.reject(new Error('must not be called')),
      retryDelaysMs: [10, 10],
    });
    await logged(/no answer from https:\/\/127\.0\.0\.1:\d+ in 0\.02 s: the clock stays as it is/);
  });

  it('does nothing over plain HTTP, where no certificate has dates to check', async () => {
    const { logger } = capturedLogger();
    const result = await catchUpWithServerClock({
      serverUrl: 'http://127.0.0.1:9',
      ca: null,
      logger,
      now: () => 0,
      setClock: () => Promise.reject(new Error('must not be called')),
    });
    expect(result).toBeNull();
  });

  it('checks the name as well as the signatures', () => {
    const chain = [new X509Certificate(fleet.chain), new X509Certificate(fleetCa.certPem)];
    const anchors = [new X509Certificate(fleetCa.certPem)];
    expect(chainsTo(chain, anchors, '127.0.0.1')).toBe(true);
    expect(chainsTo(chain, anchors, '10.0.2.2')).toBe(false);
    expect(chainsTo(chain, [new X509Certificate(otherCa.certPem)], '127.0.0.1')).toBe(false);
  });
});
