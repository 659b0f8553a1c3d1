/**
 * The fleet's TUF repository as a stock client sees it (issue 16, items 5 and 7): tuf-js reads it
 * over HTTP from a running server, follows root rotations, and takes targets signed by a rotated
 * key; the server refuses roots a client would refuse.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Updater } from 'tuf-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLog } from '../../protocol/api/audit.ts';
import type { RollbackOrder, RotatedOnlineKey, TufStatus } from '../../protocol/api/tuf.ts';
import type { TufRoot, TufRootSigned } from '../../protocol/tuf/metadata.ts';
import { draftRoot } from '../../protocol/tuf/root-draft.ts';
import { generateTufKey, keyIdOf, signatureBy, tufKeyOf } from '../../protocol/tuf/signing.ts';
import { uploadArtifact } from '../support/artifacts.ts';
import { sqliteBackend } from '../support/databases.ts';
import { startTestServer, type TestServer } from '../support/test-server.ts';

const YEAR = 365 * 24 * 60 * 60 * 1000;

describe('the TUF repository, read by a stock TUF client', () => {
  let server: TestServer;
  const directories: string[] = [];
  const firstRootKeys = [generateTufKey(), generateTufKey(), generateTufKey()];
  const secondRootKeys = [generateTufKey(), generateTufKey()];

  const status = async () => (await server.api<TufStatus>('GET', '/api/v1/tuf/online-keys')).body;
  const publish = (root: TufRoot) =>
    server.api<TufStatus | { message: string }>('POST', '/api/v1/tuf/root', root);
  const signedBy = (signed: TufRootSigned, ...keys: KeyObject[]): TufRoot => ({
    signed,
    signatures: keys.map((key) => signatureBy(signed, key)),
  });
  /** The next root as `boardfleet keys draft-root` drafts it: the server's online keys, pending ones first. */
  async function draftNext(rootKeys: KeyObject[] | null, threshold: number | null): Promise<TufRootSigned> {
    const current = await status();
    const online = (role: 'targets' | 'snapshot' | 'timestamp') =>
      (current.onlineKeys[role].pending ?? current.onlineKeys[role].active).key;
    return draftRoot({
      previous: current.root?.signed ?? null,
      rootKeys: rootKeys?.map(tufKeyOf) ?? null,
      threshold,
      onlineKeys: {
        targets: online('targets'),
        snapshot: online('snapshot'),
        timestamp: online('timestamp'),
      },
      expiresAt: Date.now() + YEAR,
    });
  }
  /** A device's TUF client that trusts `rootVersion` of the fleet's root, as it was first given it. */
  async function clientTrusting(rootVersion: number) {
    const directory = mkdtempSync(join(tmpdir(), 'tuf-client-'));
    directories.push(directory);
    const root = await fetch(`${server.httpUrl}/tuf/${rootVersion}.root.json`);
    writeFileSync(join(directory, 'root.json'), Buffer.from(await root.arrayBuffer()));
    return {
      /** A fresh client each time, as after a device restart: it starts from the metadata it kept. */
      updater: () => new Updater({ metadataDir: directory, metadataBaseUrl: `${server.httpUrl}/tuf` }),
      trustedRootVersion: () =>
        (JSON.parse(readFileSync(join(directory, 'root.json'), 'utf8')) as TufRoot).signed.version,
    };
  }

  beforeAll(async () => {
    server = await startTestServer(sqliteBackend);
  });

  afterAll(async () => {
    await server?.dispose();
    for (const directory of directories) rmSync(directory, { recursive: true, force: true });
  });

  it('answers 404 naming `boardfleet keys init` until an operator publishes the first root', async () => {
    const missing = await server.api<{ message: string }>('GET', '/tuf/root.json', undefined, '');
    expect(missing.status).toBe(404);
    expect(missing.body.message).toContain('boardfleet keys init');
    expect((await server.api('GET', '/tuf/timestamp.json', undefined, '')).status).toBe(404);
    const wrongName = await server.api<{ message: string }>('GET', '/tuf/mirrors.json', undefined, '');
    expect(wrongName.status).toBe(400);
    expect(wrongName.body.message).toContain('timestamp.json');
    // Target files are not served here, and no path under /tuf/ gets the dashboard's page.
    expect((await fetch(`${server.httpUrl}/tuf/targets/artifacts/app/1.0.0`)).status).toBe(404);
  });

  it('refuses a first root its own threshold did not sign, and publishes nothing', async () => {
    const refused = await publish(signedBy(await draftNext(firstRootKeys, 2), firstRootKeys[0] as KeyObject));
    expect(refused).toEqual({
      status: 400,
      body: expect.objectContaining({
        message: 'root version 1 refused: signed by 1 of its own root keys; it needs 2',
      }),
    });
    expect((await server.api('GET', '/tuf/1.root.json', undefined, '')).status).toBe(404);
  });

  it('serves root v1 and the online documents to tuf-js, which finds an artifact pushed through the API', async () => {
    const published = await publish(signedBy(await draftNext(firstRootKeys, 2), ...firstRootKeys));
    expect(published.status).toBe(201);
    const client = await clientTrusting(1);
    await client.updater().refresh();

    const content = Buffer.from('firmware bytes');
    await uploadArtifact(server, content, { name: 'blink', version: '1.0.0', boards: ['uno'] });
    const info = await client.updater().getTargetInfo('artifacts/blink/1.0.0');
    expect(info).toBeDefined();
    expect(info?.length).toBe(content.length);
    expect(info?.custom).toEqual({ name: 'blink', version: '1.0.0', boards: ['uno'], kind: 'app-bundle' });

    // An artifact big enough to be chunked: its chunk index is a target too, by length and sha256.
    const bundle = await uploadArtifact(server, randomBytes(400 * 1024), {
      name: 'bundle',
      version: '1.0.0',
      boards: ['rpi-4b'],
    });
    const index = await fetch(`${server.httpUrl}/api/v1/artifacts/${bundle.id}/chunk-index`, {
      headers: { authorization: `Bearer ${server.adminToken}` },
    });
    const indexBytes = Buffer.from(await index.arrayBuffer());
    const indexTarget = await client.updater().getTargetInfo('chunk-indexes/bundle/1.0.0');
    expect(indexTarget?.length).toBe(indexBytes.length);
    expect(indexTarget?.hashes.sha256).toBe(index.headers.get('x-boardfleet-chunk-index-sha256'));
    expect(indexTarget?.custom).toEqual({ artifactSha256: bundle.sha256 });

    const timestamp = await fetch(`${server.httpUrl}/tuf/timestamp.json`);
    expect(timestamp.headers.get('cache-control')).toBe('no-cache');
    const versioned = await fetch(`${server.httpUrl}/tuf/1.root.json`);
    expect(versioned.headers.get('cache-control')).toContain('immutable');
  });

  it.each([
    {
      check: 'the version',
      root: async () => signedBy({ ...(await draftNext(null, null)), version: 5 }, ...firstRootKeys),
      message: 'root version 5 refused: the current root is version 1, so the next must be 2',
    },
    {
      check: "the old root's threshold",
      root: async () =>
        signedBy(await draftNext(secondRootKeys, 2), firstRootKeys[0] as KeyObject, ...secondRootKeys),
      message: "root version 2 refused: signed by 1 of version 1's root keys; it needs 2",
    },
    {
      check: 'the online keys',
      root: async () => {
        const stranger = tufKeyOf(generateTufKey());
        const draft = await draftNext(null, null);
        return signedBy(
          {
            ...draft,
            keys: { ...draft.keys, [keyIdOf(stranger)]: stranger },
            roles: { ...draft.roles, timestamp: { keyids: [keyIdOf(stranger)], threshold: 1 } },
          },
          ...firstRootKeys,
        );
      },
      message: `which is not a key the server holds for timestamp`,
    },
  ])('refuses a root that fails $check, saying so, and keeps the current one', async ({ root, message }) => {
    const refused = await publish(await root());
    expect(refused.status).toBe(400);
    expect((refused.body as { message: string }).message).toContain(message);
    expect((await status()).root?.signed.version).toBe(1);
  });

  it('rotates the root keys: a client holding root v1 follows to v2, signed by the old threshold and the new', async () => {
    const second = await draftNext(secondRootKeys, 2);
    const published = await publish(signedBy(second, ...firstRootKeys.slice(1), ...secondRootKeys));
    expect(published.status).toBe(201);
    const client = await clientTrusting(1);
    await client.updater().refresh();
    expect(client.trustedRootVersion()).toBe(2);
  });

  it('rotates the targets key: a client holding root v1 follows the chain and takes targets the new key signed', async () => {
    const before = await status();
    const rotated = await server.api<RotatedOnlineKey>('POST', '/api/v1/tuf/online-keys/rotate', {
      role: 'targets',
    });
    expect(rotated.status).toBe(201);
    expect(rotated.body.created).toBe(true);
    const client = await clientTrusting(1);
    await client.updater().refresh();

    const third = await draftNext(null, null);
    expect(third.roles.targets.keyids).toEqual([rotated.body.pending.keyId]);
    expect((await publish(signedBy(third, ...secondRootKeys))).status).toBe(201);
    await uploadArtifact(server, Buffer.from('next firmware'), {
      name: 'blink',
      version: '1.1.0',
      boards: ['uno'],
    });

    const updater = client.updater();
    expect(await updater.getTargetInfo('artifacts/blink/1.1.0')).toBeDefined();
    expect(client.trustedRootVersion()).toBe(3);
    const targets = (await server.api<TufRoot>('GET', '/tuf/targets.json', undefined, '')).body;
    expect(targets.signatures.map((signature) => signature.keyid)).toEqual([rotated.body.pending.keyId]);
    expect(before.onlineKeys.targets.active.keyId).not.toBe(rotated.body.pending.keyId);
    // A fresh device that only knows the first root gets there too.
    const fresh = await clientTrusting(1);
    expect(await fresh.updater().getTargetInfo('artifacts/blink/1.0.0')).toBeDefined();
  });

  it('signs a rollback order into targets, where the client finds it', async () => {
    const issued = await server.api<RollbackOrder>('POST', '/api/v1/tuf/rollback-orders', {
      release: 'missing-release',
      from: '1.1.0',
      to: '1.0.0',
    });
    expect(issued.status).toBe(404);
    const device = (
      await server.api<{ device: { id: string } }>('POST', '/api/v1/devices', { name: 'bench' })
    ).body;
    const order = await server.api<RollbackOrder>('POST', '/api/v1/tuf/rollback-orders', {
      device: device.device.id,
      from: '1.1.0',
      to: '1.0.0',
    });
    expect(order.status).toBe(201);
    const client = await clientTrusting(1);
    const info = await client.updater().getTargetInfo(order.body.path);
    expect(info?.custom).toEqual({
      device: device.device.id,
      from: '1.1.0',
      to: '1.0.0',
      issuedAt: order.body.issuedAt,
    });
  });

  it('writes every key ceremony to the audit log, refused ones with the reason', async () => {
    const { entries } = (await server.api<AuditLog>('GET', '/api/v1/audit?limit=50')).body;
    const ceremonies = entries.filter(
      (entry) => entry.action.startsWith('tuf-') || entry.action.startsWith('rollback'),
    );
    expect(ceremonies.map((entry) => [entry.action, entry.target, entry.outcome])).toEqual([
      ['rollback-order.create', expect.stringMatching(/^rbo-/), 'ok'],
      ['rollback-order.create', null, 'failed'],
      ['tuf-root.publish', 'root v3', 'ok'],
      ['tuf-key.rotate', 'targets', 'ok'],
      ['tuf-root.publish', 'root v2', 'ok'],
      ['tuf-root.publish', 'root v2', 'failed'],
      ['tuf-root.publish', 'root v2', 'failed'],
      ['tuf-root.publish', 'root v5', 'failed'],
      ['tuf-root.publish', 'root v1', 'ok'],
      ['tuf-root.publish', 'root v1', 'failed'],
    ]);
    const [firstCeremony] = ceremonies.slice(-2);
    expect(firstCeremony?.detail).toMatch(
      /^root keys [0-9a-f]{12},[0-9a-f]{12},[0-9a-f]{12} threshold 2; targets [0-9a-f]{12}; snapshot [0-9a-f]{12}; timestamp [0-9a-f]{12}; signed by [0-9a-f]{12},[0-9a-f]{12},[0-9a-f]{12}$/,
    );
  });
});
