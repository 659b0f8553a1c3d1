import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { RolloutState } from '../../protocol/api/rollouts.ts';
import { type DeviceEvent, deploymentReportOf } from '../../protocol/schemas.ts';
import type { Clock } from '../common/clock.ts';
import { generateId } from '../common/secrets.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ClusterMutex } from '../cluster/cluster-mutex.ts';
import type { ReplicaRegistry } from '../cluster/replica-registry.ts';
import { type DatabaseHealth, type DatabaseState, isConnectionLoss } from '../db/database-health.ts';
import type { RolloutDeviceRecord, RolloutRecord, StoredReport } from './rollout.repository.ts';
import { RolloutExecutor, type RolloutExecutorDependencies } from './rollout-executor.ts';
import type { TickerLease } from './rollout-cluster.ts';
import {
  type DevicePresence,
  planAbort,
  planApprove,
  planDeviceReports,
  planOffline,
  planPause,
  planResume,
  planTick,
  PRESENCE_GRACE_MS,
  type RolloutSnapshot,
  soaksDue,
  wantsLateJoiners,
} from './rollout-planner.ts';
import { ACTIVE_DEPLOYMENT_STATES } from './rollout-state-machine.ts';
import type { RolloutStep } from './rollout-steps.ts';
import { matchTargetAmong } from './rollout-target.ts';

const TICK_MS = 500;
/**
 * How long after a device's offline report it is judged: a broker that shuts down may send every
 * device's will before the server sees the broker go, and those devices are back once it is.
 */
const OFFLINE_CONFIRM_MS = 10_000;
const PRESENCE_BATCH = 500;
const OPEN_ROLLOUTS = [RolloutState.Running, RolloutState.Paused];
const MAX_ATTEMPTS_WHILE_UP = 5;
/** Device reports applied in one job, at most. */
const REPORT_BATCH = 500;

/** A device's report waiting to be applied. */
type PendingReport = StoredReport & { deviceId: string };

export interface RolloutEngineDependencies extends RolloutExecutorDependencies {
  clock: Clock;
  logger: Logger;
  /** Work that lost its database connection waits for the database, then runs again. */
  database: DatabaseHealth;
  /** Held around every read, plan, write and publish: two replicas never plan from the same state. */
  mutex: ClusterMutex;
  /** Only its holder ticks; each tick renews it. */
  ticker: TickerLease;
  /**
   * The replicas on this database: what they saw of the fleet's presence goes back to the
   * earliest; one that left may have stored device reports its engine never applied.
   */
  replicas: Pick<ReplicaRegistry, 'clusterSince' | 'othersAlive'>;
  /**
   * Whether the broker keeps retained messages across its restarts (Mosquitto). The embedded
   * broker does not, so every stored desired state is published again when the server starts.
   */
  brokerKeepsRetained: boolean;
}

/**
 * Moves rollouts forward: reads what the planner needs, asks it for the steps and has the
 * executor apply them. Work is serialised on one queue (ticks, device reports, operator actions)
 * and, across replicas, by the cluster mutex; one replica ticks, the holder of the ticker lease.
 * Devices move only by a new versioned desired state, so a lost or repeated message changes nothing.
 */
export class RolloutEngine extends EventEmitter<{
  /** A rollout, one of its waves or devices changed state or progress (the dashboard's live view). */
  'rollout-changed': [rolloutId: string];
  /** The steps just applied to a rollout (webhooks read its state changes from them). */
  'steps-applied': [rolloutId: string, steps: readonly RolloutStep[]];
}> {
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private waitingTick: Promise<void> | null = null;
  private pendingReports: PendingReport[] = [];
  private waitingReports: Promise<void> | null = null;
  private readonly executor: RolloutExecutor;
  /** Whether this replica ticks; it publishes what others left unpublished when it starts to. */
  private ticking = false;
  /** While ticking: the other replicas alive at the last tick, to notice one leaving. */
  private othersAlive = new Set<string>();
  /**
   * Set by `start()` to when the earliest running replica started, and to now when the database
   * comes back: presence before it is not known, as the first server marks every device offline
   * when it starts, and heartbeats that waited out an outage are not stored yet.
   */
  private presenceKnownSince = 0;
  /** When the server's broker session last came back after losing the broker (never: a grace ago before 0). */
  private brokerBackAt = -PRESENCE_GRACE_MS;
  /** Offline reports waiting to be judged (OFFLINE_CONFIRM_MS). */
  private readonly offlineChecks = new Set<NodeJS.Timeout>();
  /** Aborted on stop: work waiting for the database gives up. */
  private readonly stopping = new AbortController();
  private readonly onDatabaseState = (state: DatabaseState) => {
    if (state === 'up') this.presenceKnownSince = this.deps.clock.now();
  };

  constructor(private readonly deps: RolloutEngineDependencies) {
    super();
    this.executor = new RolloutExecutor(deps);
  }

  /**
   * Republishes every stored desired state on the embedded broker, which forgot them; then ticks
   * whenever this replica holds the ticker lease (the first tick takes it if it is free).
   */
  async start(): Promise<void> {
    this.presenceKnownSince = await this.deps.replicas.clusterSince();
    this.deps.database.on('state-changed', this.onDatabaseState);
    if (!this.deps.brokerKeepsRetained) await this.run(() => this.executor.republishAll());
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  /** The server's broker session is back after a broker restart: presence is uncertain for a while. */
  brokerReconnected(): void {
    this.presenceKnownSince = this.deps.clock.now();
    this.brokerBackAt = this.presenceKnownSince;
  }

  /** The server's broker session is gone: no soak is judged on presence until it is back. */
  brokerLost(): void {
    this.presenceKnownSince = Number.POSITIVE_INFINITY;
  }

  /** Finishes the work under way, then gives the ticker lease up so another replica ticks at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const check of this.offlineChecks) clearTimeout(check);
    this.offlineChecks.clear();
    this.stopping.abort();
    this.deps.database.off('state-changed', this.onDatabaseState);
    await this.queue;
    // Without the database the lease runs out by itself.
    await this.deps.ticker
      .release()
      .catch((error: unknown) => this.deps.logger.warn({ err: error }, 'ticker lease not released'));
  }

  /** Runs work after everything queued before it, in the cluster mutex; errors are logged, never crash the server. */
  private run<T>(work: () => Promise<T>, options: { retry?: boolean } = {}): Promise<T> {
    return this.enqueue(() => this.deps.mutex.runExclusive(work), options);
  }

  private enqueue<T>(work: () => Promise<T>, { retry = true } = {}): Promise<T> {
    const result = this.queue.then(() => {
      // Reports arriving while the server stops are stored: the next ticker applies them.
      if (this.stopping.signal.aborted)
        throw new BoardfleetError('unavailable', 'the server is stopping; try again');
      return retry ? this.untilDone(work) : work();
    });
    this.queue = result.catch((error: unknown) => {
      if (this.stopping.signal.aborted) this.deps.logger.debug({ err: error }, 'rollout step left at stop');
      else this.deps.logger.error({ err: error }, 'rollout engine step failed');
    });
    return result;
  }

  /**
   * Runs work again after it lost its database connection, once the database answers: each piece
   * of work reads what it decides from and writes its steps in one transaction, so a try cut
   * short left nothing behind, and a device's report or presence is not lost to an outage.
   * A commit whose answer was lost may have been written without its desired states going out,
   * so the unpublished ones are published first.
   */
  private async untilDone<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (attempt > 1) await this.deps.mutex.runExclusive(() => this.publishUnpublished());
        return await work();
      } catch (error) {
        if (!isConnectionLoss(error) || this.stopping.signal.aborted) throw error;
        this.deps.logger.warn(
          { err: error, attempt },
          'rollout engine lost the database; trying again once it is back',
        );
        // A database that answers pings but keeps ending this work's connection is not waited for forever.
        if ((await this.deps.database.check()) === 'up' && attempt >= MAX_ATTEMPTS_WHILE_UP) throw error;
        if (!(await this.deps.database.whenUp(this.stopping.signal))) throw error;
      }
    }
  }

  /** Ticks every open rollout, on the replica that holds (or now takes) the ticker lease; elsewhere nothing. */
  tick(): Promise<void> {
    // One tick waiting is enough: while the database is away they would pile up behind it.
    this.waitingTick ??= this.enqueue(async () => {
      this.waitingTick = null;
      // Held outside the mutex (it is one atomic statement): a replica that does not tick never waits for one that does.
      if (!(await this.deps.ticker.hold())) {
        this.ticking = false;
        return;
      }
      const others = new Set((await this.deps.replicas.othersAlive()).map((replica) => replica.id));
      const someoneLeft = [...this.othersAlive].some((id) => !others.has(id));
      await this.deps.mutex.runExclusive(async () => {
        // Taking over (or starting), the last ticker may have died between a commit and its
        // publish, or with device reports stored and not applied; another replica leaving, too.
        if (!this.ticking) {
          this.deps.logger.info('this server ticks the rollouts now');
          await this.publishUnpublished();
        }
        if (!this.ticking || someoneLeft) await this.askDevicesAtWork(await this.applyStoredReports());
        this.ticking = true;
        this.othersAlive = others;
        for (const rollout of await this.deps.rollouts.listRollouts(OPEN_ROLLOUTS)) {
          const now = this.deps.clock.now();
          const snapshot = await this.snapshot(rollout, now);
          await this.apply(rollout.id, planTick(snapshot, { now, newDeploymentId: () => generateId('dep') }));
        }
      });
    });
    return this.waitingTick;
  }

  /**
   * Applies the device reports stored for the open rollouts' devices at work that no engine
   * applied; the devices that were at work.
   */
  private async applyStoredReports(): Promise<string[]> {
    const atWorkIds: string[] = [];
    for (const rollout of await this.deps.rollouts.listRollouts(OPEN_ROLLOUTS)) {
      const waves = await this.deps.rollouts.waves(rollout.id);
      const atWork = (await this.deps.rollouts.devices(rollout.id)).filter((device) =>
        ACTIVE_DEPLOYMENT_STATES.includes(device.state),
      );
      const reports = new Map<string, StoredReport[]>();
      for (const stored of await this.deps.rollouts.storedReports(atWork))
        reports.set(stored.deploymentId, [...(reports.get(stored.deploymentId) ?? []), stored]);
      const now = this.deps.clock.now();
      const steps = atWork.flatMap((device) =>
        planDeviceReports(device, reports.get(device.deploymentId) ?? [], {
          now,
          soakSeconds: waves[device.waveIndex]?.config.soakSeconds ?? 0,
        }),
      );
      if (steps.length > 0)
        this.deps.logger.info(
          { rolloutId: rollout.id, steps: steps.length },
          'applied device reports no replica had',
        );
      await this.apply(rollout.id, steps);
      atWorkIds.push(...atWork.map((device) => device.deviceId));
    }
    return atWorkIds;
  }

  /**
   * Has devices at work send their last deployment report again (a `report` command): a report
   * the broker had handed to a replica that died before storing it is otherwise lost, and the
   * device would wait in its state until the rollout times out.
   */
  private async askDevicesAtWork(deviceIds: string[]): Promise<void> {
    for (const deviceId of deviceIds) {
      const command = { id: generateId('cmd'), issuedAt: this.deps.clock.now(), type: 'report' as const };
      await this.deps.mqtt
        .publishToDevice(deviceId, 'commands', command, { retain: false })
        .catch((error: unknown) =>
          this.deps.logger.warn({ err: error, deviceId }, 'a device at work was not asked to report again'),
        );
    }
    if (deviceIds.length > 0)
      this.deps.logger.info(
        { devices: deviceIds.length },
        'devices at work asked to send their last report again',
      );
  }

  private async publishUnpublished(): Promise<void> {
    const published = await this.executor.publishUnpublished();
    if (published > 0)
      this.deps.logger.info({ published }, 'published desired states that were written but never sent');
  }

  onDeviceEvent(deviceId: string, event: DeviceEvent): void {
    const report = deploymentReportOf(event);
    const deploymentId = event.deploymentId;
    if (!report || !deploymentId) return;
    this.pendingReports.push({ deviceId, deploymentId, report, message: event.message });
    this.scheduleReports();
  }

  /**
   * One job applies every report that arrived since the last, up to a batch: a burst of reports
   * (a wave of devices) costs one mutex hold and one transaction per rollout, not one per report.
   */
  private scheduleReports(): void {
    this.waitingReports ??= this.enqueue(
      async () => {
        this.waitingReports = null;
        const batch = this.pendingReports.splice(0, REPORT_BATCH);
        if (this.pendingReports.length > 0) this.scheduleReports();
        await this.untilDone(() => this.deps.mutex.runExclusive(() => this.applyReports(batch)));
      },
      { retry: false },
    );
  }

  private async applyReports(batch: readonly PendingReport[]): Promise<void> {
    const found = await this.deps.rollouts.findByDeploymentIds([
      ...new Set(batch.map((pending) => pending.deploymentId)),
    ]);
    // By rollout, then by deployment in arrival order; a report naming another device's deployment is ignored.
    type Reported = { device: RolloutDeviceRecord; reports: PendingReport[] };
    const byRollout = new Map<string, Map<string, Reported>>();
    for (const pending of batch) {
      const match = found.get(pending.deploymentId);
      if (!match || match.device.deviceId !== pending.deviceId) continue;
      const byDeployment = byRollout.get(match.rolloutId) ?? new Map<string, Reported>();
      const reported = byDeployment.get(pending.deploymentId) ?? { device: match.device, reports: [] };
      reported.reports.push(pending);
      byDeployment.set(pending.deploymentId, reported);
      byRollout.set(match.rolloutId, byDeployment);
    }
    for (const [rolloutId, byDeployment] of byRollout) {
      const waves = await this.deps.rollouts.waves(rolloutId);
      const now = this.deps.clock.now();
      const steps = [...byDeployment.values()].flatMap(({ device, reports }) =>
        planDeviceReports(device, reports, {
          now,
          soakSeconds: waves[device.waveIndex]?.config.soakSeconds ?? 0,
        }),
      );
      await this.apply(rolloutId, steps);
    }
  }

  onPresence(deviceId: string, online: boolean): void {
    if (online) return;
    const offlineAt = this.deps.clock.now();
    const confirm = setTimeout(() => {
      this.offlineChecks.delete(confirm);
      // Offline around a broker restart is everyone's blip (it dropped them all): the end of the
      // soak judges those devices, once they had the time to reconnect.
      if (offlineAt < this.brokerBackAt + PRESENCE_GRACE_MS || !Number.isFinite(this.presenceKnownSince))
        return;
      void this.run(async () => {
        const [record] = await this.deps.devices.list({ ids: [deviceId], limit: 1, offset: 0 });
        if (record?.online) return;
        for (const rollout of await this.deps.rollouts.listRollouts(OPEN_ROLLOUTS)) {
          const device = (await this.deps.rollouts.devices(rollout.id)).find((d) => d.deviceId === deviceId);
          if (device) await this.apply(rollout.id, planOffline(device, this.deps.clock.now()));
        }
      });
    }, OFFLINE_CONFIRM_MS);
    confirm.unref();
    this.offlineChecks.add(confirm);
  }

  /**
   * Sends devices whose configuration variables changed a new desired state (same deployment, the
   * next version), on the engine's queue and in the cluster mutex like every desired state written,
   * so a rollout and a config change never both take one version; how many were sent.
   */
  reissueConfig(deviceIds: readonly string[]): Promise<number> {
    return this.run(() => this.executor.reissueConfig(deviceIds), { retry: false });
  }

  // Operator actions, run on the engine's queue so they never race a tick; false when refused.

  pause(rolloutId: string, by: string): Promise<boolean> {
    return this.act(rolloutId, (rollout, now) => planPause(rollout, by, now));
  }

  resume(rolloutId: string, by: string): Promise<boolean> {
    return this.act(rolloutId, async (rollout, now) =>
      planResume(rollout, await this.deps.rollouts.waves(rolloutId), by, now),
    );
  }

  approve(rolloutId: string, by: string): Promise<boolean> {
    return this.act(rolloutId, async (_rollout, now) =>
      planApprove(await this.deps.rollouts.waves(rolloutId), by, now),
    );
  }

  abort(rolloutId: string, by: string): Promise<boolean> {
    return this.act(rolloutId, async (rollout, now) =>
      planAbort(
        rollout,
        await this.deps.rollouts.waves(rolloutId),
        await this.deps.rollouts.devices(rolloutId),
        `aborted by ${by}`,
        now,
      ),
    );
  }

  private act(
    rolloutId: string,
    plan: (rollout: RolloutRecord, now: number) => RolloutStep[] | Promise<RolloutStep[]>,
  ): Promise<boolean> {
    // An operator waiting on an HTTP request gets a 503 now rather than an answer after the outage.
    if (this.deps.database.state !== 'up') {
      return Promise.reject(
        new BoardfleetError(
          'unavailable',
          `the database is unavailable (${this.deps.database.reason}); try again`,
        ),
      );
    }
    return this.run(
      async () => {
        const rollout = await this.deps.rollouts.getRollout(rolloutId);
        if (!rollout) return false;
        const steps = await plan(rollout, this.deps.clock.now());
        await this.apply(rolloutId, steps);
        return steps.length > 0;
      },
      { retry: false },
    );
  }

  private async snapshot(rollout: RolloutRecord, now: number): Promise<RolloutSnapshot> {
    const waves = await this.deps.rollouts.waves(rollout.id);
    const devices = await this.deps.rollouts.devices(rollout.id);
    // Only devices outside the rollout can join it: reading just those keeps a tick of a large fleet cheap.
    const targetDeviceIds = wantsLateJoiners(rollout, waves)
      ? await matchTargetAmong(
          this.deps.devices,
          rollout.target,
          await this.deps.rollouts.devicesOutside(rollout.id),
        )
      : undefined;
    return {
      rollout,
      waves,
      devices,
      ...(targetDeviceIds ? { targetDeviceIds } : {}),
      presence: await this.presence(soaksDue(devices, now)),
      presenceKnownSince: this.presenceKnownSince,
    };
  }

  private async presence(deviceIds: readonly string[]): Promise<Map<string, DevicePresence>> {
    const presence = new Map<string, DevicePresence>();
    for (let start = 0; start < deviceIds.length; start += PRESENCE_BATCH) {
      const ids = deviceIds.slice(start, start + PRESENCE_BATCH);
      for (const record of await this.deps.devices.list({
        ids,
        includeRevoked: true,
        limit: ids.length,
        offset: 0,
      }))
        presence.set(record.id, { online: record.online, lastSeenAt: record.lastSeenAt });
    }
    return presence;
  }

  private async apply(rolloutId: string, steps: readonly RolloutStep[]): Promise<void> {
    if (steps.length === 0) return;
    await this.executor.apply(rolloutId, steps);
    this.emit('rollout-changed', rolloutId);
    this.emit('steps-applied', rolloutId, steps);
  }
}
