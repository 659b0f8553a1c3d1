import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { RolloutState } from '../../protocol/api/rollouts.ts';
import { type DeviceEvent, deploymentReportOf } from '../../protocol/schemas.ts';
import type { Clock } from '../common/clock.ts';
import { generateId } from '../common/secrets.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import { type DatabaseHealth, type DatabaseState, isConnectionLoss } from '../db/database-health.ts';
import type { RolloutRecord } from './rollout.repository.ts';
import { RolloutExecutor, type RolloutExecutorDependencies } from './rollout-executor.ts';
import {
  type DevicePresence,
  NOTIFY_RATE_WINDOW_MS,
  planAbort,
  planApprove,
  planDeviceReport,
  planOffline,
  planPause,
  planResume,
  planTick,
  type RolloutSnapshot,
  soaksDue,
  wantsLateJoiners,
} from './rollout-planner.ts';
import type { NotifyStep, RolloutStep } from './rollout-steps.ts';
import { matchTarget } from './rollout-target.ts';

const TICK_MS = 500;
const PRESENCE_BATCH = 500;
const OPEN_ROLLOUTS = [RolloutState.Running, RolloutState.Paused];
const MAX_ATTEMPTS_WHILE_UP = 5;

export interface RolloutEngineDependencies extends RolloutExecutorDependencies {
  clock: Clock;
  logger: Logger;
  /** Work that lost its database connection waits for the database, then runs again. */
  database: DatabaseHealth;
}

/**
 * Moves rollouts forward: reads what the planner needs, asks it for the steps and has the
 * executor apply them. Work is serialised on one queue (ticks, device reports, operator actions),
 * and devices move only by a new versioned desired state, so a lost or repeated message changes nothing.
 */
export class RolloutEngine extends EventEmitter<{
  /** A rollout, one of its waves or devices changed state or progress (the dashboard's live view). */
  'rollout-changed': [rolloutId: string];
}> {
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private waitingTick: Promise<void> | null = null;
  private readonly executor: RolloutExecutor;
  /** When each rollout's waves notified devices, for the notify rate. In memory: after a restart the budget starts full. */
  private readonly notifyTimes = new Map<string, Map<number, number[]>>();
  /**
   * Set by `start()`, and again when the database comes back: presence before it is not known, as
   * the server marks every device offline when it starts, and heartbeats that waited out an outage
   * are not stored yet.
   */
  private presenceKnownSince = 0;
  /** Aborted on stop: work waiting for the database gives up. */
  private readonly stopping = new AbortController();
  private readonly onDatabaseState = (state: DatabaseState) => {
    if (state === 'up') this.presenceKnownSince = this.deps.clock.now();
  };

  constructor(private readonly deps: RolloutEngineDependencies) {
    super();
    this.executor = new RolloutExecutor(deps);
  }

  /** Republishes every stored desired state, then ticks. */
  async start(): Promise<void> {
    this.presenceKnownSince = this.deps.clock.now();
    this.deps.database.on('state-changed', this.onDatabaseState);
    await this.executor.republishAll();
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.stopping.abort();
    this.deps.database.off('state-changed', this.onDatabaseState);
    await this.queue;
  }

  /** Runs work after everything queued before it; errors are logged, never crash the server. */
  private run<T>(work: () => Promise<T>, { retry = true } = {}): Promise<T> {
    const result = this.queue.then(() => (retry ? this.untilDone(work) : work()));
    this.queue = result.catch((error: unknown) =>
      this.deps.logger.error({ err: error }, 'rollout engine step failed'),
    );
    return result;
  }

  /**
   * Runs work again after it lost its database connection, once the database answers: each piece
   * of work reads what it decides from and writes its steps in one transaction, so a try cut
   * short left nothing behind, and a device's report or presence is not lost to an outage.
   * A commit whose answer was lost may have been written without its desired states going out,
   * so the stored desired states are published again first (agents ignore versions they have).
   */
  private async untilDone<T>(work: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (attempt > 1) await this.executor.republishAll();
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

  tick(): Promise<void> {
    // One tick waiting is enough: while the database is away they would pile up behind it.
    this.waitingTick ??= this.run(async () => {
      this.waitingTick = null;
      for (const rollout of await this.deps.rollouts.listRollouts(OPEN_ROLLOUTS)) {
        const now = this.deps.clock.now();
        const snapshot = await this.snapshot(rollout, now);
        await this.apply(rollout.id, planTick(snapshot, { now, newDeploymentId: () => generateId('dep') }));
      }
    });
    return this.waitingTick;
  }

  onDeviceEvent(deviceId: string, event: DeviceEvent): void {
    const report = deploymentReportOf(event);
    const deploymentId = event.deploymentId;
    if (!report || !deploymentId) return;
    void this.run(async () => {
      const found = await this.deps.rollouts.findByDeploymentId(deploymentId);
      if (!found || found.device.deviceId !== deviceId) return;
      const waves = await this.deps.rollouts.waves(found.rolloutId);
      await this.apply(
        found.rolloutId,
        planDeviceReport(found.device, report, {
          now: this.deps.clock.now(),
          soakSeconds: waves[found.device.waveIndex]?.config.soakSeconds ?? 0,
          message: event.message,
        }),
      );
    });
  }

  onPresence(deviceId: string, online: boolean): void {
    if (online) return;
    void this.run(async () => {
      for (const rollout of await this.deps.rollouts.listRollouts(OPEN_ROLLOUTS)) {
        const device = (await this.deps.rollouts.devices(rollout.id)).find((d) => d.deviceId === deviceId);
        if (device) await this.apply(rollout.id, planOffline(device, this.deps.clock.now()));
      }
    });
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
    const targetDeviceIds = wantsLateJoiners(rollout, waves)
      ? (await matchTarget(this.deps.devices, rollout.target)).map((device) => device.id)
      : undefined;
    return {
      rollout,
      waves,
      devices,
      ...(targetDeviceIds ? { targetDeviceIds } : {}),
      presence: await this.presence(soaksDue(devices, now)),
      notifiedAt: this.notifyTimes.get(rollout.id) ?? new Map(),
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
    for (const step of steps) if (step.kind === 'notify') this.countNotifies(rolloutId, step);
    this.emit('rollout-changed', rolloutId);
  }

  private countNotifies(rolloutId: string, step: NotifyStep): void {
    const byWave = this.notifyTimes.get(rolloutId) ?? new Map<number, number[]>();
    const recent = (byWave.get(step.waveIndex) ?? []).filter((at) => step.at - at < NOTIFY_RATE_WINDOW_MS);
    for (const _ of step.devices) recent.push(step.at);
    byWave.set(step.waveIndex, recent);
    this.notifyTimes.set(rolloutId, byWave);
  }
}
