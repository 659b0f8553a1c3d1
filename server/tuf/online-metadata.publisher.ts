import type { Logger } from 'pino';
import { BoardfleetError } from '../../protocol/errors.ts';
import {
  metaFileOf,
  ONLINE_ROLES,
  type OnlineRole,
  type TufEnvelope,
  type TufRoot,
  type TufRootSigned,
  type TufSnapshotSigned,
  type TufTargetsSigned,
  type TufTimestampSigned,
} from '../../protocol/tuf/metadata.ts';
import { readPrivateKey, signatureBy } from '../../protocol/tuf/signing.ts';
import type { ArtifactRepository } from '../artifacts/artifact.repository.ts';
import type { Clock } from '../common/clock.ts';
import { isDue, nextOnlineStep, type OnlineState, type OnlineStep } from './online-metadata-planner.ts';
import type { RollbackOrderRepository } from './rollback-order.repository.ts';
import type { TufKeyRepository } from './tuf-key.repository.ts';
import type { StoredDocument, TufMetadataRepository } from './tuf-metadata.repository.ts';
import { wantedTargets } from './tuf-targets.ts';

/** How often each replica checks the online documents: far inside the timestamp's half life. */
export const REFRESH_INTERVAL_MS = 60_000;

/**
 * Steps one run takes at most: three documents, each possibly lost a few times to a replica
 * signing the same version. More means replicas keep overtaking each other: the next run retries.
 */
const MAX_STEPS = 12;

export interface PublisherParts {
  keys: TufKeyRepository;
  metadata: TufMetadataRepository;
  orders: RollbackOrderRepository;
  artifacts: ArtifactRepository;
  clock: Clock;
  logger: Logger;
}

/**
 * Keeps targets, snapshot and timestamp signed and fresh, as the planner decides: on a timer, on
 * a read of timestamp.json that finds the repository behind, and when something they list
 * changes. Replicas may all do it at once: a version is stored once (the table's key), a replica
 * that loses reads the winner's document back and plans again from there.
 */
export class OnlineMetadataPublisher {
  private running: Promise<void> | null = null;
  private followUp: Promise<void> | null = null;

  constructor(private readonly parts: PublisherParts) {}

  /**
   * Signs whatever is behind. A call made while a run is under way waits for one more run after
   * it, since the running one may have read the repository before the caller's change.
   */
  reconcile(): Promise<void> {
    if (!this.running) {
      this.running = this.settle().finally(() => {
        this.running = null;
      });
      return this.running;
    }
    this.followUp ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.followUp = null;
        return this.reconcile();
      });
    return this.followUp;
  }

  /**
   * The newest timestamp.json, signed again first when it is past half its life or targets.json
   * does not list as many targets as there are artifacts and rollback orders. A failure to sign
   * is logged and the published one served: it stays valid until it expires.
   */
  async currentTimestamp(): Promise<StoredDocument | null> {
    if (await this.isBehind())
      await this.reconcile().catch((error: unknown) =>
        this.parts.logger.error({ err: error }, 'signing TUF metadata for a reader failed'),
      );
    return this.parts.metadata.latest('timestamp');
  }

  /** Checks on a timer until the returned function stops it (and waits for a run under way). */
  startRefreshing(intervalMs = REFRESH_INTERVAL_MS): () => Promise<void> {
    const tick = () =>
      void this.reconcile().catch((error: unknown) =>
        this.parts.logger.error({ err: error }, 'signing TUF metadata failed'),
      );
    tick();
    const timer = setInterval(tick, intervalMs);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await this.followUp?.catch(() => undefined);
      await this.running?.catch(() => undefined);
    };
  }

  /** A cheap look (no document is read whole) at whether a run would sign anything for a reader. */
  private async isBehind(): Promise<boolean> {
    const { metadata, artifacts, orders, clock } = this.parts;
    const timestamp = await metadata.latestFacts('timestamp');
    if (!timestamp || isDue(timestamp, clock.now())) return true;
    const targets = await metadata.latestFacts('targets');
    // Artifacts, their chunk indexes and orders are only ever added: another count means another list.
    return targets?.targetCount !== (await artifacts.targetCount()) + (await orders.count());
  }

  private async settle(): Promise<void> {
    for (let taken = 0; taken < MAX_STEPS; taken++) {
      const step = await this.nextStep();
      if (!step) return;
      if (await this.store(step))
        this.parts.logger.info(
          { role: step.role, version: step.signed.version, reason: step.reason },
          `signed TUF ${step.role} version ${step.signed.version} (${step.reason})`,
        );
    }
    throw new BoardfleetError(
      'unavailable',
      `the TUF metadata did not settle in ${MAX_STEPS} steps: other replicas keep signing newer versions; the next check tries again`,
    );
  }

  private async nextStep(): Promise<OnlineStep | null> {
    const { metadata, artifacts, orders, clock } = this.parts;
    const root = await metadata.latest('root');
    if (!root) return null;
    // Each document is read before the one it names, and the lists last: whatever another
    // replica signs meanwhile is then newer than what this one read, so this one's next version
    // collides with it rather than naming something older than a published document does.
    const timestamp = await metadata.latest('timestamp');
    const snapshot = await metadata.latest('snapshot');
    const targets = await metadata.latest('targets');
    const wanted = wantedTargets(await artifacts.catalogue(), await orders.list());
    const state: OnlineState = {
      now: clock.now(),
      signers: signersOf((JSON.parse(root.document) as TufRoot).signed),
      targets: targets && {
        ...facts(targets),
        targets: parse<TufTargetsSigned>(targets).targets,
      },
      snapshot: snapshot && {
        ...facts(snapshot),
        targetsMeta: parse<TufSnapshotSigned>(snapshot).meta['targets.json'],
      },
      timestamp: timestamp && {
        ...facts(timestamp),
        snapshotMeta: parse<TufTimestampSigned>(timestamp).meta['snapshot.json'],
      },
      wantedTargets: wanted,
    };
    return nextOnlineStep(state);
  }

  /** Signs and stores a step; false when another replica stored that version first. */
  private async store(step: OnlineStep): Promise<boolean> {
    const held = (await this.parts.keys.list()).find((key) => key.keyId === step.keyId);
    if (!held)
      throw new BoardfleetError(
        'unavailable',
        `the current root names ${step.role} key ${step.keyId}, which the server does not hold: publish a root naming the server's keys (boardfleet keys draft-root)`,
      );
    const privateKey = readPrivateKey(held.privateKeyPem, `the server's ${step.role} key ${step.keyId}`);
    const envelope: TufEnvelope = { signed: step.signed, signatures: [signatureBy(step.signed, privateKey)] };
    return this.parts.metadata.insert({
      role: step.role,
      version: step.signed.version,
      document: JSON.stringify(envelope),
      signedAt: this.parts.clock.now(),
      expiresAt: Date.parse(step.signed.expires),
      keyId: step.keyId,
      targetCount: step.role === 'targets' ? step.targetCount : null,
    });
  }
}

function signersOf(root: TufRootSigned): Record<OnlineRole, string> {
  return Object.fromEntries(ONLINE_ROLES.map((role) => [role, root.roles[role].keyids[0] ?? ''])) as Record<
    OnlineRole,
    string
  >;
}

const parse = <Signed>(stored: StoredDocument) => (JSON.parse(stored.document) as { signed: Signed }).signed;

const facts = (stored: StoredDocument) => ({
  version: stored.version,
  signedAt: stored.signedAt,
  expiresAt: stored.expiresAt,
  keyId: stored.keyId,
  meta: metaFileOf(stored.version, stored.document),
});
