import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { DesiredState, DeviceEvent } from '../../protocol/schemas.ts';
import type { DeployableArtifactKind } from '../../protocol/manifest.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { ServerMqttClient } from '../broker/server-mqtt-client.ts';
import type { Clock } from '../common/clock.ts';
import { generateId } from '../common/secrets.ts';
import type { DeviceRecord, DeviceRepository } from '../devices/device.repository.ts';
import type { ReleaseService } from '../releases/release.service.ts';
import type {
  RolloutDeviceRecord,
  RolloutRecord,
  RolloutRepository,
  WaveRecord,
} from './rollout.repository.ts';
import {
  ACTIVE_DEPLOYMENT_STATES,
  DEPLOYMENT_TRANSITIONS,
  DeploymentEvent,
  DeploymentState,
  nextState,
  ROLLOUT_TRANSITIONS,
  RolloutEvent,
  RolloutState,
  WAVE_TRANSITIONS,
  WaveEvent,
  WaveState,
} from './rollout-state-machine.ts';
import { countWave, evaluateWave, notifyBudget } from './wave-evaluator.ts';
import { waveForLateJoiner } from './wave-planner.ts';

const TICK_MS = 500;
const MINUTE_MS = 60_000;

/** What an agent reports on `events` as `type: 'deployment'`, `data.state`. */
const AGENT_REPORTS: Record<string, DeploymentEvent> = {
  downloading: DeploymentEvent.DownloadStarted,
  installing: DeploymentEvent.InstallStarted,
  'awaiting-reboot': DeploymentEvent.RebootPending,
  installed: DeploymentEvent.Installed,
  failed: DeploymentEvent.Fail,
  'rolled-back': DeploymentEvent.RolledBack,
};

const STRATEGY_BY_KIND: Record<DeployableArtifactKind, NonNullable<DesiredState['deployment']>['strategy']> =
  {
    'app-bundle': 'app-bundle',
    'mcu-firmware': 'mcu-serial',
    'linux-image': 'linux-ab',
    unikernel: 'vm',
  };

export interface RolloutEngineDependencies {
  rollouts: RolloutRepository;
  devices: DeviceRepository;
  releases: ReleaseService;
  mqtt: ServerMqttClient;
  clock: Clock;
  logger: Logger;
}

/**
 * Moves rollouts forward. Work is serialised on one queue (ticks, device reports, operator
 * actions), every state change is written before the message that acts on it is published, and
 * devices move only by a new versioned desired state, so a lost or repeated message changes nothing.
 */
export class RolloutEngine extends EventEmitter<{
  /** A rollout, one of its waves or devices changed state or progress (the dashboard's live view). */
  'rollout-changed': [rolloutId: string];
}> {
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** Recent notify times per rollout wave, for the notify rate. In memory: after a restart the budget starts full. */
  private readonly notifyTimes = new Map<string, number[]>();

  constructor(private readonly deps: RolloutEngineDependencies) {
    super();
  }

  /** Republishes every stored desired state (the embedded broker forgets retained messages on restart), then ticks. */
  async start(): Promise<void> {
    for (const { deviceId, desired } of await this.deps.rollouts.allDesired()) {
      await this.deps.mqtt.publishToDevice(deviceId, 'desired', desired, { retain: true });
    }
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.queue;
  }

  /** Runs work after everything queued before it; errors are logged, never crash the server. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const result = this.queue.then(work);
    this.queue = result.catch((error: unknown) =>
      this.deps.logger.error({ err: error }, 'rollout engine step failed'),
    );
    return result;
  }

  tick(): Promise<void> {
    return this.run(async () => {
      for (const rollout of await this.deps.rollouts.listRollouts([
        RolloutState.Running,
        RolloutState.Paused,
      ])) {
        await this.advance(rollout);
      }
    });
  }

  onDeviceEvent(deviceId: string, event: DeviceEvent): void {
    if (event.type !== 'deployment' || !event.deploymentId) return;
    void this.run(async () => {
      const found = await this.deps.rollouts.findByDeploymentId(event.deploymentId as string);
      if (!found || found.device.deviceId !== deviceId) return;
      const report = String(event.data?.state ?? '');
      const deploymentEvent = AGENT_REPORTS[report];
      const progress = typeof event.data?.progress === 'number' ? Math.round(event.data.progress) : undefined;
      if (!deploymentEvent) {
        if (progress !== undefined) {
          await this.deps.rollouts.updateDevice(found.rolloutId, deviceId, { progress });
          this.emit('rollout-changed', found.rolloutId);
        }
        return;
      }
      const waves = await this.deps.rollouts.waves(found.rolloutId);
      const soakSeconds = waves[found.device.waveIndex]?.config.soakSeconds ?? 0;
      await this.moveDevice(found.rolloutId, found.device, deploymentEvent, {
        ...(progress !== undefined ? { progress } : {}),
        ...(event.message ? { reason: event.message } : {}),
        ...(deploymentEvent === DeploymentEvent.Installed
          ? { soakUntil: this.deps.clock.now() + soakSeconds * 1000 }
          : {}),
      });
    });
  }

  /** A device that goes offline while soaking has failed its soak. */
  onPresence(deviceId: string, online: boolean): void {
    if (online) return;
    void this.run(async () => {
      for (const rollout of await this.deps.rollouts.listRollouts([
        RolloutState.Running,
        RolloutState.Paused,
      ])) {
        const device = (await this.deps.rollouts.devices(rollout.id)).find((d) => d.deviceId === deviceId);
        if (device?.state === DeploymentState.Soaking) {
          await this.moveDevice(rollout.id, device, DeploymentEvent.Fail, {
            reason: 'went offline during the soak',
          });
        }
      }
    });
  }

  private async moveDevice(
    rolloutId: string,
    device: RolloutDeviceRecord,
    event: DeploymentEvent,
    changes: Partial<RolloutDeviceRecord> = {},
  ): Promise<boolean> {
    const next = nextState(DEPLOYMENT_TRANSITIONS, device.state, event);
    if (!next) return false;
    await this.deps.rollouts.updateDevice(rolloutId, device.deviceId, {
      ...changes,
      state: next,
      stateChangedAt: this.deps.clock.now(),
    });
    device.state = next;
    this.emit('rollout-changed', rolloutId);
    return true;
  }

  private async advance(rollout: RolloutRecord): Promise<void> {
    const now = this.deps.clock.now();
    const waves = await this.deps.rollouts.waves(rollout.id);
    let devices = await this.deps.rollouts.devices(rollout.id);
    if (rollout.state === RolloutState.Running && rollout.options.dynamic) {
      devices = [...devices, ...(await this.addLateJoiners(rollout, waves, devices))];
    }

    // Timeouts, soaks and retries apply to every wave's devices, paused or not.
    for (const device of devices) {
      const config = waves[device.waveIndex]?.config;
      if (!config) continue;
      if (
        ACTIVE_DEPLOYMENT_STATES.includes(device.state) &&
        device.state !== DeploymentState.Soaking &&
        device.notifiedAt !== null &&
        now - device.notifiedAt > config.deviceTimeoutSeconds * 1000
      ) {
        await this.moveDevice(rollout.id, device, DeploymentEvent.Fail, {
          reason: `no result within ${config.deviceTimeoutSeconds} s`,
        });
      } else if (
        device.state === DeploymentState.Soaking &&
        device.soakUntil !== null &&
        now >= device.soakUntil
      ) {
        const problem = await this.soakProblem(device, config.soakSeconds, now);
        if (problem) await this.moveDevice(rollout.id, device, DeploymentEvent.Fail, { reason: problem });
        else await this.moveDevice(rollout.id, device, DeploymentEvent.SoakPassed, { progress: 100 });
      }
      if (
        device.state === DeploymentState.Failed &&
        device.attempt <= config.retries &&
        rollout.state === RolloutState.Running
      ) {
        await this.moveDevice(rollout.id, device, DeploymentEvent.Retry, {
          attempt: device.attempt + 1,
          deploymentId: generateId('dep'),
          progress: null,
          notifiedAt: null,
        });
      }
    }
    if (rollout.state !== RolloutState.Running) return;

    const current = waves.find((wave) => wave.state !== WaveState.Succeeded);
    if (!current) {
      await this.moveRollout(rollout, RolloutEvent.AllWavesSucceeded, null, 'all waves succeeded');
      return;
    }
    if (current.state === WaveState.Pending) {
      const event = current.config.requiresApproval ? WaveEvent.AwaitApproval : WaveEvent.Start;
      await this.moveWave(rollout.id, current, event, event === WaveEvent.Start ? { startedAt: now } : {});
      await this.deps.rollouts.log(
        rollout.id,
        event === WaveEvent.Start
          ? `${waveLabel(current.name)} started`
          : `${waveLabel(current.name)} awaits approval`,
        now,
      );
    }
    if (current.state !== WaveState.Running) return;

    const members = devices.filter((device) => device.waveIndex === current.index);
    const counts = countWave(members.map((device) => device.state));
    const verdict = evaluateWave(counts, current.config);
    if (verdict === 'tripped') {
      await this.moveWave(rollout.id, current, WaveEvent.ErrorThresholdCrossed, { finishedAt: now });
      const reason = `${waveLabel(current.name)} tripped: ${counts.failed} of ${counts.size} failed (threshold ${current.config.errorThresholdPercent}%)`;
      await this.deps.rollouts.log(rollout.id, reason, now);
      if (rollout.options.onTrip === 'abort') await this.abort(rollout, reason);
      else await this.moveRollout(rollout, RolloutEvent.WaveTripped, reason, `rollout paused: ${reason}`);
      return;
    }
    if (verdict === 'succeeded') {
      await this.moveWave(rollout.id, current, WaveEvent.SuccessThresholdReached, { finishedAt: now });
      await this.deps.rollouts.log(
        rollout.id,
        `${waveLabel(current.name)} succeeded: ${counts.committed} of ${counts.size} committed`,
        now,
      );
      return;
    }

    const key = `${rollout.id}:${current.index}`;
    const recent = (this.notifyTimes.get(key) ?? []).filter((at) => now - at < MINUTE_MS);
    const budget = notifyBudget({
      queued: counts.queued,
      inProgress: counts.inProgress,
      maxParallel: current.config.maxParallel,
      notifyRatePerMinute: current.config.notifyRatePerMinute,
      notifiedInLastMinute: recent.length,
    });
    const toNotify = members.filter((d) => d.state === DeploymentState.Queued).slice(0, budget);
    if (toNotify.length > 0) {
      await this.notify(rollout, toNotify, now);
      for (const _ of toNotify) recent.push(now);
    }
    this.notifyTimes.set(key, recent);
  }

  /**
   * Notifies a batch: everything it needs is read in a few queries, every state change is
   * written in one transaction, and only then are the desired states published.
   */
  private async notify(rollout: RolloutRecord, batch: RolloutDeviceRecord[], now: number): Promise<void> {
    const release = await this.deps.releases.getOrThrow(rollout.releaseId);
    const ids = batch.map((device) => device.deviceId);
    const records = new Map(
      (await this.deps.devices.list({ ids, includeRevoked: true, limit: ids.length, offset: 0 })).map(
        (record) => [record.id, record],
      ),
    );
    const previousDesired = await this.deps.rollouts.desiredFor(ids);
    // Read before the transaction: SQLite has one connection, which the transaction holds.
    const artifactByBoard = new Map<string, ArtifactRecord | null>();
    for (const record of records.values()) {
      for (const board of deploymentBoards(record)) {
        if (!artifactByBoard.has(board))
          artifactByBoard.set(board, await this.deps.releases.artifactFor(release, board));
      }
    }
    const publications: Array<{ deviceId: string; desired: DesiredState }> = [];
    await this.deps.rollouts.transaction(async (rollouts) => {
      const move = async (
        device: RolloutDeviceRecord,
        event: DeploymentEvent,
        changes: Partial<RolloutDeviceRecord>,
      ) => {
        const next = nextState(DEPLOYMENT_TRANSITIONS, device.state, event);
        if (!next) return;
        await rollouts.updateDevice(rollout.id, device.deviceId, {
          ...changes,
          state: next,
          stateChangedAt: now,
        });
        device.state = next;
      };
      for (const device of batch) {
        const record = records.get(device.deviceId);
        const boards = record ? deploymentBoards(record) : [];
        // The device's own board first, then the Arduinos attached to it (mcu-firmware).
        const board = boards.find((candidate) => artifactByBoard.get(candidate)) ?? boards[0] ?? null;
        const artifact = board ? artifactByBoard.get(board) : null;
        if (!record || record.revokedAt !== null || !artifact) {
          await move(device, DeploymentEvent.Notify, {});
          await move(device, DeploymentEvent.Fail, {
            reason:
              !record || record.revokedAt !== null
                ? 'device revoked'
                : `release ${release.name} has no artifact for board ${board ?? '(unknown)'}`,
          });
          continue;
        }
        const previous = previousDesired.get(device.deviceId) ?? null;
        await move(device, DeploymentEvent.Notify, {
          notifiedAt: now,
          artifactId: artifact.id,
          previousDeployment: previous?.deployment ?? null,
          progress: 0,
        });
        const desired: DesiredState = {
          version: (previous?.version ?? 0) + 1,
          issuedAt: now,
          deployment: deploymentFromArtifact(artifact, device.deploymentId),
        };
        await rollouts.saveDesired(device.deviceId, desired, now);
        publications.push({ deviceId: device.deviceId, desired });
      }
    });
    await Promise.all(
      publications.map(({ deviceId, desired }) =>
        this.deps.mqtt.publishToDevice(deviceId, 'desired', desired, { retain: true }),
      ),
    );
    this.emit('rollout-changed', rollout.id);
  }

  /** Why a device that finished its soak did not pass it, or null when it did. */
  private async soakProblem(
    device: RolloutDeviceRecord,
    soakSeconds: number,
    now: number,
  ): Promise<string | null> {
    const record = await this.deps.devices.get(device.deviceId);
    if (!record?.online) return 'offline at the end of the soak';
    const quietFor = now - (record.lastSeenAt ?? 0);
    // A heartbeat is due at least every soak period; a device that stayed silent is not healthy.
    if (soakSeconds > 0 && quietFor > Math.max(soakSeconds * 1000, 5_000))
      return `no heartbeat for ${Math.round(quietFor / 1000)} s during the soak`;
    return null;
  }

  private async publishDesired(deviceId: string, deployment: DesiredState['deployment']): Promise<void> {
    const previous = await this.deps.rollouts.desired(deviceId);
    const desired: DesiredState = {
      version: (previous?.version ?? 0) + 1,
      issuedAt: this.deps.clock.now(),
      deployment,
    };
    await this.deps.rollouts.saveDesired(deviceId, desired, desired.issuedAt);
    await this.deps.mqtt.publishToDevice(deviceId, 'desired', desired, { retain: true });
  }

  private async addLateJoiners(
    rollout: RolloutRecord,
    waves: WaveRecord[],
    existing: RolloutDeviceRecord[],
  ): Promise<RolloutDeviceRecord[]> {
    const waveIndex = waveForLateJoiner(waves.map((wave) => wave.state));
    if (waveIndex === null) return [];
    const known = new Set(existing.map((device) => device.deviceId));
    const joiners = (await matchTarget(this.deps.devices, rollout.target)).filter(
      (device) => !known.has(device.id),
    );
    if (joiners.length === 0) return [];
    const now = this.deps.clock.now();
    const records = joiners.map((device) => newRolloutDevice(device.id, waveIndex, now));
    await this.deps.rollouts.insertDevices(rollout.id, records);
    await this.deps.rollouts.log(
      rollout.id,
      `${records.length} device(s) joined wave ${waves[waveIndex]?.name}: ${records.map((r) => r.deviceId).join(', ')}`,
      now,
    );
    this.emit('rollout-changed', rollout.id);
    return records;
  }

  private async moveWave(
    rolloutId: string,
    wave: WaveRecord,
    event: WaveEvent,
    changes: { startedAt?: number; finishedAt?: number },
  ) {
    const next = nextState(WAVE_TRANSITIONS, wave.state, event);
    if (!next) return false;
    await this.deps.rollouts.setWaveState(rolloutId, wave.index, next, changes);
    wave.state = next;
    this.emit('rollout-changed', rolloutId);
    return true;
  }

  private async moveRollout(
    rollout: RolloutRecord,
    event: RolloutEvent,
    reason: string | null,
    message: string,
  ): Promise<boolean> {
    const next = nextState(ROLLOUT_TRANSITIONS, rollout.state, event);
    if (!next) return false;
    const now = this.deps.clock.now();
    await this.deps.rollouts.setRolloutState(rollout.id, next, reason, now);
    await this.deps.rollouts.log(rollout.id, message, now);
    rollout.state = next;
    this.emit('rollout-changed', rollout.id);
    return true;
  }

  // Operator actions, run on the engine's queue so they never race a tick.

  pause(rollout: RolloutRecord, by: string) {
    return this.run(() =>
      this.moveRollout(rollout, RolloutEvent.Pause, `paused by ${by}`, `paused by ${by}`),
    );
  }

  resume(rollout: RolloutRecord, by: string) {
    return this.run(async () => {
      const moved = await this.moveRollout(rollout, RolloutEvent.Resume, null, `resumed by ${by}`);
      if (moved) {
        for (const wave of await this.deps.rollouts.waves(rollout.id)) {
          if (wave.state === WaveState.Tripped) await this.moveWave(rollout.id, wave, WaveEvent.Resume, {});
        }
      }
      return moved;
    });
  }

  approve(rollout: RolloutRecord, by: string) {
    return this.run(async () => {
      const waiting = (await this.deps.rollouts.waves(rollout.id)).find(
        (wave) => wave.state === WaveState.AwaitingApproval,
      );
      if (!waiting) return false;
      await this.moveWave(rollout.id, waiting, WaveEvent.Approve, { startedAt: this.deps.clock.now() });
      await this.deps.rollouts.log(
        rollout.id,
        `${waveLabel(waiting.name)} approved by ${by}`,
        this.deps.clock.now(),
      );
      return true;
    });
  }

  abortByOperator(rollout: RolloutRecord, by: string) {
    return this.run(() => this.abort(rollout, `aborted by ${by}`));
  }

  /**
   * Aborting stops the rollout: queued devices never start, devices mid-update are sent back to
   * what they ran before, and with `rollbackOnAbort` so is every device the rollout already moved.
   */
  private async abort(rollout: RolloutRecord, reason: string): Promise<boolean> {
    if (!(await this.moveRollout(rollout, RolloutEvent.Abort, reason, `rollout aborted: ${reason}`)))
      return false;
    for (const device of await this.deps.rollouts.devices(rollout.id)) {
      const midUpdate = ACTIVE_DEPLOYMENT_STATES.includes(device.state);
      const moved =
        midUpdate || device.state === DeploymentState.Committed || device.state === DeploymentState.Failed;
      if (!(midUpdate || (rollout.options.rollbackOnAbort && moved))) continue;
      await this.publishDesired(
        device.deviceId,
        device.previousDeployment ? { ...device.previousDeployment, rollback: true } : null,
      );
      await this.deps.rollouts.updateDevice(rollout.id, device.deviceId, {
        state: DeploymentState.RolledBack,
        reason: device.reason ?? `rolled back: ${reason}`,
        stateChangedAt: this.deps.clock.now(),
      });
    }
    this.emit('rollout-changed', rollout.id);
    return true;
  }
}

/** The desired deployment that moves a device to an artifact; the URL is relative to the server. */
export function deploymentFromArtifact(
  artifact: ArtifactRecord,
  deploymentId: string,
): NonNullable<DesiredState['deployment']> {
  return {
    id: deploymentId,
    strategy: STRATEGY_BY_KIND[artifact.kind as DeployableArtifactKind],
    artifact: artifact.name,
    version: artifact.version,
    sha256: artifact.sha256,
    size: artifact.size,
    url: `/api/v1/artifacts/${artifact.id}/content`,
    manifest: artifact.manifest,
    signature: artifact.signature,
    rollback: false,
  };
}

export function newRolloutDevice(deviceId: string, waveIndex: number, now: number): RolloutDeviceRecord {
  return {
    deviceId,
    waveIndex,
    deploymentId: generateId('dep'),
    state: DeploymentState.Queued,
    attempt: 1,
    artifactId: null,
    previousDeployment: null,
    progress: null,
    reason: null,
    notifiedAt: null,
    soakUntil: null,
    stateChangedAt: now,
  };
}

/** Devices matching a rollout target: every kind given must match (one of the ids, tags, boards). */
export async function matchTarget(
  devices: DeviceRepository,
  target: RolloutRecord['target'],
): Promise<DeviceRecord[]> {
  const all: DeviceRecord[] = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await devices.list({ limit: 1000, offset });
    all.push(...page);
    if (page.length < 1000) break;
  }
  const ids = target.deviceIds ? new Set(target.deviceIds) : null;
  return all.filter(
    (device) =>
      (!ids || ids.has(device.id)) &&
      (!target.tags || target.tags.some((tag) => device.tags.includes(tag))) &&
      (!target.boards || target.boards.includes(device.inventory?.board ?? device.board ?? '')),
  );
}

/**
 * The boards a device takes artifacts for: its own, then each attached board (a variant such as
 * `nano:old-bootloader` also as its base board, which is what firmware is built for).
 */
function deploymentBoards(record: DeviceRecord): string[] {
  const own = record.inventory?.board ?? record.board;
  const attached = (record.inventory?.attachedBoards ?? []).flatMap((attachedBoard) =>
    attachedBoard.board ? [attachedBoard.board, attachedBoard.board.split(':')[0]!] : [],
  );
  return [...new Set([...(own ? [own] : []), ...attached])];
}

/** "wave 1" for the default names, "wave canary" for a named one: never "wave wave 1". */
function waveLabel(name: string): string {
  return /^wave\b/i.test(name) ? name : `wave ${name}`;
}
