import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { databaseBackends } from '../../test/support/databases.ts';
import { ServerKeyRepository } from '../auth/server-key.repository.ts';
import { generateSecret } from '../common/secrets.ts';
import { type Database, migrateToLatest, openDatabase } from '../db/database.ts';
import { DeviceRepository } from '../devices/device.repository.ts';
import { ServerMetrics } from '../metrics/metrics.ts';
import { type AuthRateLimits, AuthRateLimiter, DEVICE_AUTH_LIMITS } from './auth-rate-limiter.ts';
import { DeviceAuthenticator } from './device-authenticator.ts';

/** A device secret and its scrypt hash as versions before the HMAC form stored it (N=2^14). */
const LEGACY_SECRET = 'bfd_legacy-scrypt-fixture-secret';
const LEGACY_HASH = 'scrypt$16384$8$1$crQ-jv7JUaKp3ESqa7V5Hg$j0oqdO3LcCWlKoQfRIo1H7OIC1JTTM_JZ9NcL2KJxns';
const SOURCE = '192.0.2.1';

/** Limits no test here reaches unless it means to. */
const GENEROUS: AuthRateLimits = {
  ...DEVICE_AUTH_LIMITS,
  perDevice: { ...DEVICE_AUTH_LIMITS.perDevice, freeFailures: 10_000 },
  perSource: { ...DEVICE_AUTH_LIMITS.perSource, freeFailures: 10_000 },
};

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

describe.each(databaseBackends)('device authentication on $name', (backend) => {
  let db: Database;
  let drop: () => Promise<void>;
  let devices: DeviceRepository;
  let metrics: ServerMetrics;

  const authenticatorWith = async (limits = GENEROUS, now: () => number = Date.now) =>
    new DeviceAuthenticator(
      devices,
      await new ServerKeyRepository(db).loadOrCreate('device-secrets', 0),
      new AuthRateLimiter(limits, now),
      metrics,
    );
  const addDevice = (id: string, secretHash: string) =>
    devices.create({ id, name: id, board: null, tags: [], secretHash, now: 0 });
  const storedHash = async (id: string) =>
    (await db.selectFrom('devices').select('secret_hash').where('id', '=', id).executeTakeFirstOrThrow())
      .secret_hash;
  const refusals = async (reason: string) =>
    (await metrics.deviceAuthRefused.get()).values.find((value) => value.labels.reason === reason)?.value ??
    0;

  beforeEach(async () => {
    const created = await backend.create();
    drop = created.drop;
    db = openDatabase(created.url);
    await migrateToLatest(db);
    devices = new DeviceRepository(db);
    metrics = new ServerMetrics();
  });
  afterEach(async () => {
    await db?.destroy();
    await drop?.();
  });

  it('replaces a stored scrypt hash by the HMAC form after one successful authentication', async () => {
    const authenticator = await authenticatorWith();
    await addDevice('dev-legacy', LEGACY_HASH);

    expect(await authenticator.authenticate('dev-legacy', 'bfd_wrong', SOURCE)).toBe(false);
    expect(await storedHash('dev-legacy')).toBe(LEGACY_HASH);

    expect(await authenticator.authenticate('dev-legacy', LEGACY_SECRET, SOURCE)).toBe(true);
    const migrated = await storedHash('dev-legacy');
    expect(migrated).toBe(authenticator.hashSecret(LEGACY_SECRET));
    expect(migrated).toMatch(/^hmac-sha256\$/);

    expect(await authenticator.authenticate('dev-legacy', LEGACY_SECRET, SOURCE)).toBe(true);
    expect(await authenticator.authenticate('dev-legacy', 'bfd_wrong', SOURCE)).toBe(false);
  });

  it('hashes under one key per database, so replicas sharing it accept the same secrets', async () => {
    const [first, second] = await Promise.all([
      new ServerKeyRepository(db).loadOrCreate('device-secrets', 0),
      new ServerKeyRepository(db).loadOrCreate('device-secrets', 0),
    ]);
    expect(first.equals(second)).toBe(true);
    expect(first.length).toBe(32);
    const replicaA = await authenticatorWith();
    const replicaB = await authenticatorWith();
    const secret = generateSecret('bfd');
    await addDevice('dev-shared', replicaA.hashSecret(secret));
    expect(await replicaB.authenticate('dev-shared', secret, SOURCE)).toBe(true);
  });

  it('refuses a rate-limited device id unchecked, even with the right secret, until the wait is over', async () => {
    const clock = { now: 1_000_000 };
    const authenticator = await authenticatorWith(DEVICE_AUTH_LIMITS, () => clock.now);
    const secret = generateSecret('bfd');
    await addDevice('dev-target', authenticator.hashSecret(secret));
    const free = DEVICE_AUTH_LIMITS.perDevice.freeFailures;
    for (let i = 0; i < free; i++)
      expect(await authenticator.check('dev-target', 'bfd_wrong', `192.0.2.${i + 10}`)).toEqual({
        accepted: false,
        retryAfterMs: null,
      });
    expect(await refusals('bad-credentials')).toBe(free);

    expect(await authenticator.check('dev-target', secret, SOURCE)).toEqual({
      accepted: false,
      retryAfterMs: DEVICE_AUTH_LIMITS.perDevice.baseDelayMs,
    });
    expect(await refusals('rate-limited')).toBe(1);

    clock.now += DEVICE_AUTH_LIMITS.perDevice.baseDelayMs;
    expect(await authenticator.check('dev-target', secret, SOURCE)).toEqual({ accepted: true });
    // The success cleared the id: wrong attempts are free again.
    expect(await authenticator.check('dev-target', 'bfd_wrong', SOURCE)).toEqual({
      accepted: false,
      retryAfterMs: null,
    });
  });

  it('refuses an unknown id, a revoked one and a wrong secret in the same time', async () => {
    const authenticator = await authenticatorWith();
    const secret = generateSecret('bfd');
    await addDevice('dev-known', authenticator.hashSecret(secret));
    await addDevice('dev-revoked', authenticator.hashSecret(secret));
    await devices.revoke('dev-revoked', 1);
    expect(await authenticator.authenticate('dev-revoked', secret, SOURCE)).toBe(false);

    const timed = async (deviceId: string) => {
      const started = performance.now();
      expect(await authenticator.authenticate(deviceId, 'bfd_wrong', SOURCE)).toBe(false);
      return performance.now() - started;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    // Interleaved, so a burst of load on the machine falls on both alike.
    for (let i = 0; i < 100; i++) {
      known.push(await timed('dev-known'));
      unknown.push(await timed(`dev-unknown${i}`));
    }
    // A slow hash for known ids only (the old scrypt check) made this 30 ms or more; the bound
    // leaves room for a loaded machine and a PostgreSQL round trip.
    const [knownMs, unknownMs] = [median(known), median(unknown)];
    expect(
      Math.abs(knownMs - unknownMs),
      `medians: known ${knownMs.toFixed(2)} ms, unknown ${unknownMs.toFixed(2)} ms`,
    ).toBeLessThan(5 + unknownMs / 4);
  });
});
