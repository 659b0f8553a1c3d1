import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { ServerKeyRepository } from '../auth/server-key.repository.ts';
import { createFleetCa } from './fleet-certificates.ts';
import { FleetTls } from './fleet-tls.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Stand-in for the database row the CA is kept in (server_keys, tested with both databases elsewhere). */
function keysInMemory(): ServerKeyRepository {
  const values = new Map<string, string>();
  return {
    async loadOrStore(name: string, create: () => Promise<string>) {
      if (!values.has(name)) values.set(name, await create());
      return values.get(name) as string;
    },
  } as unknown as ServerKeyRepository;
}

const open = (dataDir: string, keys: ServerKeyRepository, clock: { now(): number }, names = ['localhost']) =>
  FleetTls.open({ dataDir, names, keys, clock, logger: pino({ level: 'silent' }) });

describe('FleetTls', () => {
  it('renews the server certificate before it expires and hands the new one to the listeners', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'boardfleet-fleet-tls-'));
    let now = Date.now();
    const tls = await open(dataDir, keysInMemory(), { now: () => now });
    const first = readFileSync(join(dataDir, 'tls', 'server.pem'), 'utf8');
    const renewed: string[] = [];
    tls.onRenewed((context) => renewed.push(String(context.cert)));
    expect(await tls.renewIfDue()).toBe(false);
    now += 61 * DAY_MS;
    expect(await tls.renewIfDue()).toBe(true);
    expect(renewed).toHaveLength(1);
    const second = readFileSync(join(dataDir, 'tls', 'server.pem'), 'utf8');
    expect(second).not.toBe(first);
    expect(Date.parse(new X509Certificate(second).validTo)).toBeGreaterThan(now + 80 * DAY_MS);
    expect(new X509Certificate(second).checkIssued(new X509Certificate(tls.caPem))).toBe(true);
  });

  it("keeps one CA across restarts and replicas, and takes the operator's CA at the first start", async () => {
    const keys = keysInMemory();
    const clock = { now: () => Date.now() };
    const a = await open(mkdtempSync(join(tmpdir(), 'boardfleet-fleet-tls-')), keys, clock);
    const b = await open(mkdtempSync(join(tmpdir(), 'boardfleet-fleet-tls-')), keys, clock);
    expect(b.caFingerprint).toBe(a.caFingerprint);

    const operatorDir = mkdtempSync(join(tmpdir(), 'boardfleet-fleet-tls-'));
    const own = await createFleetCa(Date.now(), 'ACME devices CA');
    mkdirSync(join(operatorDir, 'tls'));
    writeFileSync(join(operatorDir, 'tls', 'ca.pem'), own.certPem);
    writeFileSync(join(operatorDir, 'tls', 'ca.key'), own.keyPem, { mode: 0o600 });
    const theirs = await open(operatorDir, keysInMemory(), clock, ['fleet.acme.test']);
    expect(theirs.caPem).toBe(own.certPem);
    const leaf = new X509Certificate(readFileSync(join(operatorDir, 'tls', 'server.pem'), 'utf8'));
    expect(leaf.subjectAltName).toBe('DNS:fleet.acme.test');
  });
});
