import type { KeyObject } from 'node:crypto';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TufStatus } from '../../protocol/api/tuf.ts';
import type { TufSnapshotSigned, TufTargetsSigned, TufTimestampSigned } from '../../protocol/tuf/metadata.ts';
import { draftRoot } from '../../protocol/tuf/root-draft.ts';
import { generateTufKey, signatureBy, tufKeyOf } from '../../protocol/tuf/signing.ts';
import { databaseBackends } from '../../test/support/databases.ts';
import { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import type { Clock } from '../common/clock.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { TufService } from './tuf.service.ts';

const HOUR = 60 * 60 * 1000;
const YEAR = 365 * 24 * HOUR;
const silent = pino({ level: 'silent' });

/** A clock the test moves. */
class TestClock implements Clock {
  constructor(public at: number) {}
  now(): number {
    return this.at;
  }
}

function draftAndSign(status: TufStatus, rootKeys: KeyObject[], signers: KeyObject[], now: number) {
  const key = (role: 'targets' | 'snapshot' | 'timestamp') =>
    (status.onlineKeys[role].pending ?? status.onlineKeys[role].active).key;
  const signed = draftRoot({
    previous: status.root?.signed ?? null,
    rootKeys: rootKeys.map(tufKeyOf),
    threshold: 2,
    onlineKeys: { targets: key('targets'), snapshot: key('snapshot'), timestamp: key('timestamp') },
    expiresAt: now + YEAR,
  });
  return { signed, signatures: signers.map((signer) => signatureBy(signed, signer)) };
}

describe.each(databaseBackends)('the TUF repository service on $name', (backend) => {
  let db: Database;
  let drop: () => Promise<void>;
  let clock: TestClock;
  let artifacts: ArtifactRepository;
  let tuf: TufService;
  const rootKeys = [generateTufKey(), generateTufKey(), generateTufKey()];

  const addArtifact = (version: string) =>
    artifacts.insert({
      id: `art-${version}`,
      name: 'app',
      version,
      kind: 'app-bundle',
      boards: ['rpi-4b'],
      sha256: version.replaceAll('.', '').padEnd(64, '0'),
      size: 10,
      createdAt: clock.now(),
      manifest: '{}',
      signature: 'sig',
    });
  const signed = async <Signed>(file: string) =>
    ((await tuf.metadataFile(file)).document as unknown as { signed: Signed }).signed;
  const publishFirstRoot = async () =>
    tuf.publishRoot(draftAndSign(await tuf.status(), rootKeys, rootKeys.slice(0, 2), clock.now()));

  beforeEach(async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    clock = new TestClock(Date.UTC(2026, 11, 20, 12));
    artifacts = new ArtifactRepository(db);
    tuf = TufService.open(db, artifacts, clock, silent);
  });

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('has no root until an operator publishes one, and names the command that does', async () => {
    await expect(tuf.metadataFile('root.json')).rejects.toThrow(/has no root yet.*boardfleet keys init/);
    await expect(tuf.metadataFile('timestamp.json')).rejects.toThrow(/has no root yet/);
    await expect(tuf.metadataFile('mirrors.json')).rejects.toThrow(/is not a file of the TUF repository/);
    const status = await tuf.status();
    expect(status.root).toBeNull();
    expect(status.onlineKeys.targets.pending).toBeNull();
    expect(status.published).toEqual({ targets: null, snapshot: null, timestamp: null });
    // The first keys are made once: a second look sees the same.
    expect((await tuf.status()).onlineKeys).toEqual(status.onlineKeys);
  });

  it('signs targets, snapshot and timestamp once the root is published, listing every artifact', async () => {
    await addArtifact('1.0.0');
    const status = await publishFirstRoot();
    expect(status.root?.signed.version).toBe(1);
    expect(status.published).toEqual({
      targets: { version: 1, expires: '2027-03-20T12:00:00Z' },
      snapshot: { version: 1, expires: '2026-12-27T12:00:00Z' },
      timestamp: { version: 1, expires: '2026-12-21T12:00:00Z' },
    });
    expect((await signed<TufTargetsSigned>('targets.json')).targets).toEqual({
      'artifacts/app/1.0.0': {
        length: 10,
        hashes: { sha256: '100'.padEnd(64, '0') },
        custom: { name: 'app', version: '1.0.0', boards: ['rpi-4b'], kind: 'app-bundle' },
      },
    });
    expect(await tuf.metadataFile('1.root.json')).toEqual({ document: status.root, immutable: true });
    await expect(tuf.metadataFile('2.root.json')).rejects.toThrow(
      '2.root.json not found: the newest root is version 1',
    );

    // An artifact added later is listed as soon as a client reads timestamp.json.
    await addArtifact('1.1.0');
    const timestamp = await signed<TufTimestampSigned>('timestamp.json');
    expect(timestamp.version).toBe(2);
    const snapshot = await signed<TufSnapshotSigned>(
      `${timestamp.meta['snapshot.json'].version}.snapshot.json`,
    );
    const targets = await signed<TufTargetsSigned>(`${snapshot.meta['targets.json']?.version}.targets.json`);
    expect(Object.keys(targets.targets)).toEqual(['artifacts/app/1.0.0', 'artifacts/app/1.1.0']);
  });

  it('signs the timestamp again once half its day is gone, and not before', async () => {
    await publishFirstRoot();
    clock.at += 12 * HOUR - 1;
    expect((await signed<TufTimestampSigned>('timestamp.json')).version).toBe(1);
    clock.at += 1;
    const refreshed = await signed<TufTimestampSigned>('timestamp.json');
    expect(refreshed).toMatchObject({ version: 2, expires: '2026-12-22T00:00:00Z' });
    // Only the timestamp: what it names has not changed.
    expect(refreshed.meta['snapshot.json'].version).toBe(1);
  });

  it('switches to a rotated key when a root names it, and forgets the key it replaced', async () => {
    await publishFirstRoot();
    const before = await tuf.status();
    const rotated = await tuf.rotate('targets');
    expect(rotated.created).toBe(true);
    expect(await tuf.rotate('targets')).toEqual({ ...rotated, created: false });
    // Until a root names it, the old key signs.
    await addArtifact('2.0.0');
    const stillOld = (await tuf.metadataFile('targets.json')).document.signatures;
    expect(stillOld.map((signature) => signature.keyid)).toEqual([before.onlineKeys.targets.active.keyId]);

    const after = await tuf.publishRoot(
      draftAndSign(await tuf.status(), rootKeys, rootKeys.slice(1), clock.now()),
    );
    expect(after.onlineKeys.targets).toEqual({ active: rotated.pending, pending: null });
    expect(
      (await tuf.metadataFile('targets.json')).document.signatures.map((signature) => signature.keyid),
    ).toEqual([rotated.pending.keyId]);
    const keys = await db
      .selectFrom('tuf_online_keys')
      .select('key_id')
      .where('role', '=', 'targets')
      .execute();
    expect(keys).toEqual([{ key_id: rotated.pending.keyId }]);
  });

  it('stores a rollback order once per id and lists it in targets', async () => {
    await expect(
      tuf.issueRollbackOrder({ device: 'dev-1', release: null, from: '2.0.0', to: '1.0.0' }),
    ).rejects.toThrow(/has no root yet/);
    await publishFirstRoot();
    const order = { device: null, release: 'spring', from: '2.0.0', to: '1.0.0' };
    const issued = await tuf.issueRollbackOrder(order, 'ro-1.art-2.abc');
    expect(issued).toMatchObject({
      id: 'ro-1.art-2.abc',
      path: 'rollback-orders/ro-1.art-2.abc',
      targetsVersion: 2,
    });
    expect(await tuf.issueRollbackOrder(order, 'ro-1.art-2.abc')).toEqual(issued);
    await expect(tuf.issueRollbackOrder({ ...order, to: '1.5.0' }, 'ro-1.art-2.abc')).rejects.toThrow(
      'rollback order ro-1.art-2.abc exists with other content',
    );
    await expect(tuf.issueRollbackOrder({ ...order, to: '3.0.0' })).rejects.toThrow(
      'a rollback order goes back to an older version: 3.0.0 is not older than 2.0.0',
    );
    const targets = await signed<TufTargetsSigned>('targets.json');
    expect(targets.targets['rollback-orders/ro-1.art-2.abc']?.custom).toEqual({
      release: 'spring',
      from: '2.0.0',
      to: '1.0.0',
      issuedAt: clock.now(),
    });
  });

  it('never publishes two documents under one version when replicas sign at once', async () => {
    const replicas = [
      tuf,
      TufService.open(db, artifacts, clock, silent),
      TufService.open(db, artifacts, clock, silent),
    ];
    await publishFirstRoot();
    for (let round = 0; round < 5; round++) {
      await addArtifact(`3.${round}.0`);
      clock.at += 12 * HOUR;
      await Promise.all(replicas.map((replica) => replica.metadataFile('timestamp.json')));
    }
    const rows = await db
      .selectFrom('tuf_metadata')
      .select(['role', 'version', 'document'])
      .where('role', '!=', 'root')
      .orderBy('version')
      .execute();
    const versions = (role: string) => rows.filter((row) => row.role === role).map((row) => row.version);
    for (const role of ['targets', 'snapshot', 'timestamp'])
      expect(versions(role)).toEqual(versions(role).map((_, index) => index + 1));
    // What each snapshot names never goes back: a client would refuse that as a rollback.
    const named = rows
      .filter((row) => row.role === 'snapshot')
      .map(
        (row) =>
          (JSON.parse(row.document) as { signed: TufSnapshotSigned }).signed.meta['targets.json']?.version,
      );
    expect(named).toEqual([...named].sort((x = 0, y = 0) => x - y));
    const latest = await signed<TufTargetsSigned>('targets.json');
    expect(Object.keys(latest.targets)).toHaveLength(5);
  });
});
