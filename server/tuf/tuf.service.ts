import { canonicalize } from '@tufjs/canonical-json';
import type { Logger } from 'pino';
import semver from 'semver';
import type { RollbackOrder, RotatedOnlineKey, TufOnlineKey, TufStatus } from '../../protocol/api/tuf.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  METADATA_FILE_NAMES,
  ONLINE_ROLES,
  type OnlineRole,
  parseMetadataFileName,
  type TufMetadata,
  type TufRoot,
  type TufRootSigned,
  tufTime,
} from '../../protocol/tuf/metadata.ts';
import type { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import type { Clock } from '../common/clock.ts';
import { invalidRequest } from '../common/errors.ts';
import { generateId } from '../common/secrets.ts';
import type { Database } from '../db/database.ts';
import { OnlineMetadataPublisher } from './online-metadata.publisher.ts';
import { RollbackOrderRepository } from './rollback-order.repository.ts';
import { rootRefusal } from './root-checks.ts';
import { type OnlineKeyRecord, TufKeyRepository } from './tuf-key.repository.ts';
import { TufMetadataRepository } from './tuf-metadata.repository.ts';
import { rollbackOrderPath } from './tuf-targets.ts';

export interface TufParts {
  keys: TufKeyRepository;
  metadata: TufMetadataRepository;
  orders: RollbackOrderRepository;
  publisher: OnlineMetadataPublisher;
  clock: Clock;
  logger: Logger;
}

/** The keys the server holds for one online role. */
interface RoleKeys {
  /** The key the current root names; before the first root, the role's first. */
  active: OnlineKeyRecord;
  /** A newer key a rotation made, for the next root to name. */
  pending: OnlineKeyRecord | null;
  held: OnlineKeyRecord[];
}

const NO_ROOT =
  "the fleet's TUF repository has no root yet: an operator publishes the first with `boardfleet keys init`";

/**
 * The fleet's TUF repository: serves its documents, publishes roots operators sign offline,
 * rotates the online keys and issues rollback orders. Signing the online documents is the
 * publisher's; this decides when the repository changed enough to ask it.
 */
export class TufService {
  constructor(private readonly parts: TufParts) {}

  static open(db: Database, artifacts: ArtifactRepository, clock: Clock, logger: Logger): TufService {
    const keys = new TufKeyRepository(db);
    const metadata = new TufMetadataRepository(db);
    const orders = new RollbackOrderRepository(db);
    const publisher = new OnlineMetadataPublisher({ keys, metadata, orders, artifacts, clock, logger });
    return new TufService({ keys, metadata, orders, publisher, clock, logger });
  }

  /**
   * Makes the online keys on the first start, so the first root can name them, and keeps the
   * online documents fresh until the returned function is called.
   */
  startRefreshing(): () => Promise<void> {
    void this.keysByRole(null).catch((error: unknown) =>
      this.parts.logger.error({ err: error }, 'making the TUF online keys failed'),
    );
    return this.parts.publisher.startRefreshing();
  }

  async status(): Promise<TufStatus> {
    const root = await this.currentRoot();
    const roles = await this.keysByRole(root?.signed ?? null);
    const published = async (role: OnlineRole) => {
      const facts = await this.parts.metadata.latestFacts(role);
      return facts && { version: facts.version, expires: tufTime(facts.expiresAt) };
    };
    const onlineKeys = (role: OnlineRole) => ({
      active: toApiKey(roles[role].active),
      pending: roles[role].pending && toApiKey(roles[role].pending),
    });
    return {
      root,
      onlineKeys: {
        targets: onlineKeys('targets'),
        snapshot: onlineKeys('snapshot'),
        timestamp: onlineKeys('timestamp'),
      },
      published: {
        targets: await published('targets'),
        snapshot: await published('snapshot'),
        timestamp: await published('timestamp'),
      },
    };
  }

  /** A metadata file by its name; `immutable` for a versioned one, which never changes. */
  async metadataFile(name: string): Promise<{ document: TufMetadata; immutable: boolean }> {
    const file = parseMetadataFileName(name);
    if (!file) throw invalidRequest(`${name} is not a file of the TUF repository: ${METADATA_FILE_NAMES}`);
    const { metadata, publisher } = this.parts;
    const stored =
      file.role === 'timestamp'
        ? await publisher.currentTimestamp()
        : file.version === null
          ? await metadata.latest(file.role)
          : await metadata.get(file.role, file.version);
    if (stored)
      return { document: JSON.parse(stored.document) as TufMetadata, immutable: file.version !== null };
    if (!(await metadata.latestFacts('root'))) throw new BoardfleetError('not-found', NO_ROOT);
    const newest = await metadata.latestFacts(file.role);
    if (newest)
      throw new BoardfleetError(
        'not-found',
        `${name} not found: the newest ${file.role} is version ${newest.version}`,
      );
    throw new BoardfleetError(
      'unavailable',
      `${name} is not signed yet: the server signs it once it holds the key the root names (see its log)`,
    );
  }

  /** Publishes the next root after the checks a client would make, then signs with the keys it names. */
  async publishRoot(root: TufRoot): Promise<TufStatus> {
    const { keys, metadata, publisher, clock, logger } = this.parts;
    const now = clock.now();
    const previous = await this.currentRoot();
    const roles = await this.keysByRole(previous?.signed ?? null);
    const held = Object.fromEntries(
      ONLINE_ROLES.map((role) => [role, roles[role].held.map((key) => key.keyId)]),
    ) as Record<OnlineRole, string[]>;
    const refusal = rootRefusal(root, previous?.signed ?? null, held, now);
    if (refusal) throw invalidRequest(refusal);
    const version = root.signed.version;
    const stored = await metadata.insert({
      role: 'root',
      version,
      document: JSON.stringify(root),
      signedAt: now,
      expiresAt: Date.parse(root.signed.expires),
      keyId: null,
      targetCount: null,
    });
    if (!stored)
      throw new BoardfleetError(
        'conflict',
        `root version ${version} was published meanwhile: draft the next one from it (boardfleet keys draft-root)`,
      );
    // The keys a rotation replaced sign nothing any more: their private halves go.
    for (const role of ONLINE_ROLES) {
      const named = roles[role].held.find((key) => key.keyId === root.signed.roles[role].keyids[0]);
      if (named) await keys.deleteBefore(role, named.generation);
    }
    // The root stands; the timer signs what this could not.
    await publisher
      .reconcile()
      .catch((error: unknown) =>
        logger.error({ err: error }, `signing after root version ${version} failed`),
      );
    return this.status();
  }

  /** A pending key for `role`, made now unless the role has one already. */
  async rotate(role: OnlineRole): Promise<RotatedOnlineKey> {
    const root = await this.currentRoot();
    if (!root)
      throw new BoardfleetError(
        'conflict',
        `there is no root yet to rotate ${role}'s key in: the first root names the server's current keys (boardfleet keys init)`,
      );
    const before = (await this.keysByRole(root.signed))[role];
    if (before.pending) return { role, pending: toApiKey(before.pending), created: false };
    const created = await this.parts.keys.addGeneration(
      role,
      before.active.generation + 1,
      this.parts.clock.now(),
    );
    // Made here or, racing this, by another replica: either way the one stored.
    const pending = (await this.keysByRole(root.signed))[role].pending as OnlineKeyRecord;
    return { role, pending: toApiKey(pending), created };
  }

  /**
   * Stores an order for a device or a release (already found) and signs targets.json listing it.
   * A caller that must name the order itself (a rollout sending it with a desired state) gives
   * `id`; the same id issued again with the same content answers the stored order.
   */
  async issueRollbackOrder(
    order: { device: string | null; release: string | null; from: string; to: string },
    id = generateId('rbo'),
  ): Promise<RollbackOrder> {
    const { orders, metadata, publisher, clock } = this.parts;
    if (!semver.lt(order.to, order.from))
      throw invalidRequest(
        `a rollback order goes back to an older version: ${order.to} is not older than ${order.from}`,
      );
    if (!(await metadata.latestFacts('root')))
      throw new BoardfleetError('conflict', `${NO_ROOT}, and rollback orders are signed in its targets.json`);
    const stored = await orders.insert({ id, ...order, issuedAt: clock.now() });
    const { issuedAt: _storedAt, ...storedOrder } = stored;
    if (canonicalize(storedOrder) !== canonicalize({ id, ...order }))
      throw new BoardfleetError('conflict', `rollback order ${id} exists with other content`);
    await publisher.reconcile();
    const targets = await metadata.latestFacts('targets');
    return { ...stored, path: rollbackOrderPath(id), targetsVersion: targets?.version ?? 0 };
  }

  private async currentRoot(): Promise<TufRoot | null> {
    const stored = await this.parts.metadata.latest('root');
    return stored && (JSON.parse(stored.document) as TufRoot);
  }

  /** The held keys per role, making each role's first key when it has none (the first start). */
  private async keysByRole(root: TufRootSigned | null): Promise<Record<OnlineRole, RoleKeys>> {
    const { keys, clock } = this.parts;
    let held = await keys.list();
    const keyless = ONLINE_ROLES.filter((role) => !held.some((key) => key.role === role));
    for (const role of keyless) await keys.addGeneration(role, 1, clock.now());
    if (keyless.length > 0) held = await keys.list();
    const forRole = (role: OnlineRole): RoleKeys => {
      const ofRole = held.filter((key) => key.role === role);
      const named = root?.roles[role].keyids[0];
      const active = ofRole.find((key) => key.keyId === named) ?? (ofRole[0] as OnlineKeyRecord);
      const newest = ofRole[ofRole.length - 1] as OnlineKeyRecord;
      return { active, pending: newest.generation > active.generation ? newest : null, held: ofRole };
    };
    return Object.fromEntries(ONLINE_ROLES.map((role) => [role, forRole(role)])) as Record<
      OnlineRole,
      RoleKeys
    >;
  }
}

const toApiKey = (record: OnlineKeyRecord): TufOnlineKey => ({
  keyId: record.keyId,
  key: record.key,
  createdAt: record.createdAt,
});
