import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../test/support/databases.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { AuditRepository, type NewAuditEntry } from './audit.repository.ts';

const entry = (at: number, overrides: Partial<NewAuditEntry> = {}): NewAuditEntry => ({
  at,
  actor: 'admin',
  actorTokenId: 'tok-admin',
  via: 'token',
  action: 'device.revoke',
  target: 'dev-1',
  outcome: 'ok',
  detail: null,
  reason: null,
  ...overrides,
});

describe.each(databaseBackends)('the audit log repository, on $name', (backend) => {
  let db: Database;
  let drop: () => Promise<void>;
  let audit: AuditRepository;

  beforeEach(async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    audit = new AuditRepository(db);
  });

  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('gives back what was appended, newest first, in writing order within one millisecond', async () => {
    const failed = entry(2_000, {
      actor: 'ops',
      actorTokenId: 'tok-ops',
      via: 'session',
      action: 'rollout.approve',
      target: 'ro-1',
      outcome: 'failed',
      detail: 'asked twice',
      reason: 'cannot approve rollout ro-1: it is paused and no wave awaits approval',
    });
    await audit.append(entry(1_000));
    await audit.append(failed);
    await audit.append(entry(2_000, { action: 'device.delete' }));
    await audit.append(entry(1_500, { target: null }));

    const listed = await audit.list({ limit: 10 });
    expect(listed.map(({ at, action }) => [at, action])).toEqual([
      [2_000, 'device.delete'],
      [2_000, 'rollout.approve'],
      [1_500, 'device.revoke'],
      [1_000, 'device.revoke'],
    ]);
    expect(listed[1]).toEqual({ id: expect.any(Number), ...failed });
    expect(listed[2]?.target).toBeNull();
    const ids = listed.map((listedEntry) => listedEntry.id);
    expect(new Set(ids).size).toBe(4);
    expect(ids[0]).toBeGreaterThan(ids[1] as number);
  });

  it('filters by time, by actor name or token id, and stops at the limit', async () => {
    await audit.append(entry(1_000, { actor: 'ci', actorTokenId: 'tok-ci' }));
    await audit.append(entry(2_000, { actor: 'admin', actorTokenId: 'tok-admin' }));
    await audit.append(entry(3_000, { actor: 'ci', actorTokenId: 'tok-ci' }));
    await audit.append(entry(4_000, { actor: 'ci', actorTokenId: 'tok-ci-2' }));

    const times = async (filter: Parameters<AuditRepository['list']>[0]) =>
      (await audit.list(filter)).map((listed) => listed.at);
    expect(await times({ since: 2_000, limit: 10 })).toEqual([4_000, 3_000, 2_000]);
    expect(await times({ actor: 'ci', limit: 10 })).toEqual([4_000, 3_000, 1_000]);
    expect(await times({ actor: 'tok-ci', limit: 10 })).toEqual([3_000, 1_000]);
    expect(await times({ actor: 'ci', since: 1_001, limit: 10 })).toEqual([4_000, 3_000]);
    expect(await times({ actor: 'nobody', limit: 10 })).toEqual([]);
    expect(await times({ limit: 2 })).toEqual([4_000, 3_000]);
  });

  it('refuses to change or delete an entry, even in plain SQL', async () => {
    await audit.append(entry(1_000, { outcome: 'failed', reason: 'not found' }));
    const before = await audit.list({ limit: 10 });

    const refusals = [
      sql`update audit_log set outcome = 'ok', reason = null`,
      sql`delete from audit_log`,
      ...(backend.name === 'postgresql' ? [sql`truncate audit_log`] : []),
    ];
    for (const statement of refusals)
      await expect(statement.execute(db), statement.compile(db).sql).rejects.toThrow(/append-only/);
    await expect(db.deleteFrom('audit_log').execute()).rejects.toThrow(/append-only/);
    expect(await audit.list({ limit: 10 })).toEqual(before);
  });
});
