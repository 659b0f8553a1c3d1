import { configHash } from '../../protocol/device-config-hash.ts';
import type { DesiredConfig } from '../../protocol/device-config.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { Clock } from '../common/clock.ts';
import type { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import type { DeviceRecord, DeviceRepository } from '../devices/device.repository.ts';
import type { ReleaseRecord } from '../releases/release.repository.ts';
import type { ReleaseService } from '../releases/release.service.ts';
import { chooseDelivery, deploymentBoards, nextDesired } from './desired-deployment.ts';
import { PlanWriter, type Publication } from './plan-writer.ts';
import type { RolloutRepository } from './rollout.repository.ts';
import { planDelivery } from './rollout-planner.ts';
import { type RollbackOrderTerms, rollbackOrdersOf } from './rollback-orders.ts';
import { type NotifyStep, type RolloutStep, transactionParts } from './rollout-steps.ts';

export interface RolloutExecutorDependencies {
  rollouts: RolloutRepository;
  devices: DeviceRepository;
  releases: ReleaseService;
  mqtt: ServerMqttClient;
  clock: Clock;
  /** Signs rollback orders in the fleet's TUF targets; absent, rollbacks go out unsigned (tests). */
  rollbackOrders?: RollbackOrderSigner;
  /** The configuration variables desired states carry; absent, each keeps the config it had (tests). */
  configs?: DesiredConfigSource;
}

/** Each device's configuration variables as its next desired state carries them (server/config-variables/). */
export interface DesiredConfigSource {
  /** In a few queries for any number of devices; a device without variables is left out. */
  desiredConfigs(deviceIds: readonly string[]): Promise<Map<string, DesiredConfig>>;
}

/** Who signs a rollback order before the desired states naming it go out (server/tuf/). */
export interface RollbackOrderSigner {
  /** Signs it, or does nothing while the fleet has no TUF root (its agents then need none). */
  sign(id: string, order: RollbackOrderTerms & { release: string | null }): Promise<void>;
}

/** What notifying a batch needs from outside the rollout tables, read before its transaction. */
interface NotifyInputs {
  release: ReleaseRecord;
  carriesFirmware: boolean;
  records: Map<string, DeviceRecord>;
  artifactByBoard: Map<string, ArtifactRecord | null>;
}

/**
 * Applies the planner's steps through the repository and the broker. A plan is written in one
 * transaction, so a connection lost half way leaves none of it (the engine plans again from what
 * is stored), and only then are the desired states published and marked published: a crash in
 * between leaves the database ahead of the devices, never behind, and the unpublished states for
 * whichever replica ticks next.
 */
export class RolloutExecutor {
  constructor(private readonly deps: RolloutExecutorDependencies) {}

  async apply(rolloutId: string, steps: readonly RolloutStep[]): Promise<void> {
    const publishing: Array<Promise<number>> = [];
    let writeFailure: unknown = null;
    try {
      // Each part is committed, then published while the next is written: the first devices of
      // a large wave hear of it after one part's writes, not after the whole wave's.
      for (const part of transactionParts(steps))
        publishing.push(this.publish(await this.write(rolloutId, part)));
    } catch (error) {
      writeFailure = error;
    }
    // The parts committed are published either way; then the first failure is thrown.
    const failed = (await Promise.allSettled(publishing)).find((result) => result.status === 'rejected');
    if (writeFailure) throw writeFailure;
    if (failed) throw failed.reason;
  }

  /** Writes steps in one transaction; returns the desired states to publish now it committed. */
  private async write(rolloutId: string, steps: readonly RolloutStep[]): Promise<Publication[]> {
    const notifies = steps.filter((step): step is NotifyStep => step.kind === 'notify');
    const sentTo = steps.flatMap((step) =>
      step.kind === 'send-desired'
        ? [step.deviceId]
        : step.kind === 'notify'
          ? step.devices.map((device) => device.deviceId)
          : [],
    );
    // Read before the transaction: SQLite has one connection, which the transaction holds.
    const desired = sentTo.length > 0 ? await this.deps.rollouts.desiredFor(sentTo) : new Map();
    const configs =
      sentTo.length > 0 && this.deps.configs ? await this.deps.configs.desiredConfigs(sentTo) : null;
    await this.signRollbackOrders(rolloutId, rollbackOrdersOf(steps, desired));
    const inputs = new Map<NotifyStep, NotifyInputs>();
    for (const step of notifies) inputs.set(step, await this.notifyInputs(step));
    return this.deps.rollouts.transaction(async (rollouts) => {
      const writer = new PlanWriter(rollouts, rolloutId, desired, configs);
      for (const step of steps) {
        if (step.kind === 'notify') await notify(writer, step, inputs.get(step) as NotifyInputs, desired);
        else await writer.write(step);
      }
      return writer.finish();
    });
  }

  /** Signed before the desired states naming them are written: an agent looks its order up at once. */
  private async signRollbackOrders(
    rolloutId: string,
    orders: Map<string, RollbackOrderTerms>,
  ): Promise<void> {
    const signer = this.deps.rollbackOrders;
    if (!signer || orders.size === 0) return;
    const release = (await this.deps.rollouts.getRollout(rolloutId))?.releaseId ?? null;
    for (const [id, terms] of orders) await signer.sign(id, { ...terms, release });
  }

  /**
   * Sends these devices their desired state again with their current configuration, the same
   * deployment (or none) and the next version, where the config changed; returns how many.
   */
  async reissueConfig(deviceIds: readonly string[]): Promise<number> {
    if (!this.deps.configs || deviceIds.length === 0) return 0;
    const ids = [...new Set(deviceIds)];
    const desired = await this.deps.rollouts.desiredFor(ids);
    const configs = await this.deps.configs.desiredConfigs(ids);
    const now = this.deps.clock.now();
    const changed: Publication[] = ids.flatMap((deviceId) => {
      const previous = desired.get(deviceId) ?? null;
      const config = configs.get(deviceId);
      if (configHashOf(previous?.config) === configHashOf(config)) return [];
      return [{ deviceId, desired: nextDesired(previous, previous?.deployment ?? null, now, config) }];
    });
    if (changed.length === 0) return 0;
    await this.deps.rollouts.transaction((rollouts) => rollouts.saveDesiredStates(changed, now));
    return this.publish(changed);
  }

  /** Republishes every stored desired state (the embedded broker forgets retained messages on restart). */
  async republishAll(): Promise<number> {
    return this.publish(await this.deps.rollouts.allDesired());
  }

  /**
   * Publishes the desired states written but never acknowledged by the broker: a replica died
   * between its commit and its publish, or lost the database or the broker in between.
   */
  async publishUnpublished(): Promise<number> {
    return this.publish(await this.deps.rollouts.allDesired({ unpublished: true }));
  }

  /** Everything a notify batch needs, in a few queries. */
  private async notifyInputs(step: NotifyStep): Promise<NotifyInputs> {
    const release = await this.deps.releases.getOrThrow(step.releaseId);
    const ids = step.devices.map((device) => device.deviceId);
    const records = new Map(
      (await this.deps.devices.list({ ids, includeRevoked: true, limit: ids.length, offset: 0 })).map(
        (record) => [record.id, record],
      ),
    );
    const artifactByBoard = new Map<string, ArtifactRecord | null>();
    for (const record of records.values()) {
      for (const board of deploymentBoards(record)) {
        if (!artifactByBoard.has(board))
          artifactByBoard.set(board, await this.deps.releases.artifactFor(release, board));
      }
    }
    return {
      release,
      carriesFirmware: await this.deps.releases.carriesFirmware(release),
      records,
      artifactByBoard,
    };
  }

  /**
   * Publishes, then marks what the broker acknowledged (publishToDevice resolves on PUBACK), so
   * that a replica taking over sends only the rest; throws the first failure once all settled.
   */
  private async publish(publications: readonly Publication[]): Promise<number> {
    const results = await Promise.allSettled(
      publications.map(({ deviceId, desired }) =>
        this.deps.mqtt.publishToDevice(deviceId, 'desired', desired, { retain: true }),
      ),
    );
    const acknowledged = publications.filter((_, index) => results[index]?.status === 'fulfilled');
    await this.deps.rollouts.markPublished(
      acknowledged.map(({ deviceId, desired }) => ({ deviceId, version: desired.version })),
      this.deps.clock.now(),
    );
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    return publications.length;
  }
}

/** A desired state's config hash; none stands for the empty set. */
const configHashOf = (config: DesiredConfig | undefined) => config?.hash ?? EMPTY_CONFIG_HASH;
const EMPTY_CONFIG_HASH = configHash({});

/** Notifies a batch: each device is sent the artifact for its board, or fails when there is none. */
async function notify(
  writer: PlanWriter,
  step: NotifyStep,
  { release, carriesFirmware, records, artifactByBoard }: NotifyInputs,
  desired: Map<string, DesiredState>,
): Promise<void> {
  for (const device of step.devices) {
    const delivery = chooseDelivery(records.get(device.deviceId), artifactByBoard, {
      name: release.name,
      carriesFirmware,
    });
    const previous = desired.get(device.deviceId)?.deployment ?? null;
    for (const deliveryStep of planDelivery(device, delivery, previous, step.at))
      await writer.write(deliveryStep);
  }
}
