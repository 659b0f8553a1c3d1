import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { canonicalize } from '@tufjs/canonical-json';
import { BaseFetcher, Updater } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  metaFileOf,
  snapshotSigned,
  targetsSigned,
  timestampSigned,
  type TufEnvelope,
  type TufSigned,
} from './metadata.ts';
import { draftRoot } from './root-draft.ts';
import {
  generateTufKey,
  keyIdOf,
  keysThatSigned,
  privateKeyPem,
  publicKeyObject,
  readPrivateKey,
  signatureBy,
  tufKeyOf,
  withSignature,
} from './signing.ts';

const DAY = 24 * 60 * 60 * 1000;

/** Serves metadata files from memory to tuf-js, as the server would over HTTP. */
class MemoryFetcher extends BaseFetcher {
  constructor(private readonly files: Map<string, string>) {
    super();
  }

  async fetch(url: string): Promise<NodeJS.ReadableStream> {
    const name = url.slice(url.lastIndexOf('/') + 1);
    const text = this.files.get(name);
    if (text === undefined) throw new DownloadHTTPError(`${name} not found`, 404);
    return Readable.from([Buffer.from(text)]);
  }
}

describe('TUF signing', () => {
  const directories: string[] = [];
  afterEach(() => {
    for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
  });

  it('names a key by the sha256 of its canonical JSON, and keeps its raw public key in hex', () => {
    const privateKey = generateTufKey();
    const key = tufKeyOf(privateKey);
    expect(key).toEqual({ keytype: 'ed25519', scheme: 'ed25519', keyval: { public: expect.any(String) } });
    expect(key.keyval.public).toMatch(/^[0-9a-f]{64}$/);
    expect(keyIdOf(key)).toBe(createHash('sha256').update(canonicalize(key)).digest('hex'));
    expect(tufKeyOf(publicKeyObject(key))).toEqual(key);
  });

  it('reads back the PKCS#8 PEM it writes, and refuses a key that is not ed25519', () => {
    const privateKey = generateTufKey();
    expect(tufKeyOf(readPrivateKey(privateKeyPem(privateKey), 'a.key'))).toEqual(tufKeyOf(privateKey));
    const ecdsa = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    expect(() => readPrivateKey(privateKeyPem(ecdsa), 'b.key')).toThrow(
      /b.key is an ec key; TUF keys here are ed25519/,
    );
    expect(() => readPrivateKey('not a key', 'c.key')).toThrow(/c.key is not a private key in PEM/);
  });

  it('counts each key of a role once, and only signatures that check out', () => {
    const [a, b, outsider] = [generateTufKey(), generateTufKey(), generateTufKey()];
    const keys = Object.fromEntries([a, b, outsider].map((key) => [keyIdOf(tufKeyOf(key)), tufKeyOf(key)]));
    const role = { keyids: [a, b].map((key) => keyIdOf(tufKeyOf(key))), threshold: 2 };
    const signed = targetsSigned(1, Date.now() + DAY, {});
    let envelope: TufEnvelope = { signed, signatures: [] };
    for (const key of [a, a, outsider]) envelope = withSignature(envelope, key);
    expect(envelope.signatures).toHaveLength(2);
    expect(keysThatSigned(envelope, role, keys)).toEqual([role.keyids[0]]);

    const forged = { ...signatureBy(signed, b), sig: signatureBy(targetsSigned(2, 0, {}), b).sig };
    expect(keysThatSigned({ signed, signatures: [...envelope.signatures, forged] }, role, keys)).toHaveLength(
      1,
    );
    expect(keysThatSigned(withSignature(envelope, b), role, keys)).toHaveLength(2);
  });

  it('makes a repository a stock client (tuf-js) reads, targets and their custom fields included', async () => {
    const now = Date.now();
    const rootKeys = [generateTufKey(), generateTufKey()];
    const online = { targets: generateTufKey(), snapshot: generateTufKey(), timestamp: generateTufKey() };
    const root = draftRoot({
      previous: null,
      rootKeys: rootKeys.map(tufKeyOf),
      threshold: 2,
      onlineKeys: {
        targets: tufKeyOf(online.targets),
        snapshot: tufKeyOf(online.snapshot),
        timestamp: tufKeyOf(online.timestamp),
      },
      expiresAt: now + 365 * DAY,
    });
    const sign = <S extends TufSigned>(signed: S, ...keys: ReturnType<typeof generateTufKey>[]) =>
      JSON.stringify({ signed, signatures: keys.map((key) => signatureBy(signed, key)) });
    const target = {
      length: 3,
      hashes: { sha256: 'c'.repeat(64) },
      custom: { name: 'app', boards: ['uno'] },
    };
    const targets = sign(targetsSigned(4, now + DAY, { 'artifacts/app/1.0.0': target }), online.targets);
    const snapshot = sign(snapshotSigned(5, now + DAY, metaFileOf(4, targets)), online.snapshot);
    const timestamp = sign(timestampSigned(6, now + DAY, metaFileOf(5, snapshot)), online.timestamp);
    const files = new Map([
      ['1.root.json', sign(root, ...rootKeys)],
      ['timestamp.json', timestamp],
      ['5.snapshot.json', snapshot],
      ['4.targets.json', targets],
    ]);

    const directory = mkdtempSync(join(tmpdir(), 'tuf-client-'));
    directories.push(directory);
    writeFileSync(join(directory, 'root.json'), files.get('1.root.json') as string);
    const updater = new Updater({
      metadataDir: directory,
      metadataBaseUrl: 'http://repository.invalid/tuf',
      fetcher: new MemoryFetcher(files),
    });
    await updater.refresh();
    const info = await updater.getTargetInfo('artifacts/app/1.0.0');
    expect({ length: info?.length, hashes: info?.hashes, custom: info?.custom }).toEqual(target);
  });
});
