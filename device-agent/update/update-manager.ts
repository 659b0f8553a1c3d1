import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import type { ActivationGate } from './activation-gate.ts';
import type { DeploymentReport, DesiredState, Transfer } from '../../protocol/schemas.ts';
import { type AssemblyStep, discardDownload, downloadFiles } from './delta-download.ts';
import type { FleetMetadata } from './fleet-metadata.ts';
import { verifyDeployment } from './artifact-verify.ts';
import {
  MAX_STATE_ENTRIES,
  REPORTED_AS,
  RESUME_STATE,
  TERMINAL_UPDATE_STATES,
  UPDATE_TRANSITIONS,
  UpdateEvent,
  type RunningVersion,
  type UpdateRecord,
  UpdateState,
} from './update-state-machine.ts';
import { writeJsonAtomically } from '../../lib/atomic-file.ts';
import { KeptSeeds } from './update-seeds.ts';
import { InstallRefusedError, type UpdateStrategy } from './update-strategy.ts';
import { type DeploymentStep, partsOf } from './deployment-parts.ts';
import { combinedTransfer, downloadPart } from './part-download.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

export interface UpdateReport {
  deploymentId: string;
  state: DeploymentReport;
  progress?: number;
  reason?: string;
  /** With `downloading` at 100 %: how the artifact came (delta or full) and what it cost. */
  transfer?: Transfer;
}

export interface UpdateManagerOptions {
  dataDir: string;
  serverUrl: string;
  /** Verifies the server against the pinned fleet CA; default: the global fetch (tests, loopback). */
  fetch?: typeof fetch;
  /**
   * The fleet's TUF metadata: once the device trusts a root, a deployment is downloaded only when
   * targets signs it as it is (and a downgrade only with a signed rollback order).
   */
  signedTargets?: Pick<FleetMetadata, 'hasTrustedRoot' | 'check'>;
  auth: { deviceId: string; secret: string };
  fleetPublicKeyPem: string;
  strategies: Partial<Record<Deployment['strategy'], UpdateStrategy>>;
  report: (report: UpdateReport) => void;
  logger: Logger;
  /** Test hook: called after each state is saved, before its step runs (fault injection). */
  afterSave?: (state: UpdateState) => void;
  /** Test hook: called as each step of a delta assembly is done (fault injection). */
  onAssemblyStep?: (step: AssemblyStep) => void;
  /** Holds activation back (update lock, update window); checked before each install. */
  activationGate?: ActivationGate;
  /** How often a deferred activation is checked again; 5 s by default. */
  activationRecheckMs?: number;
}

/** What a step returns when it asked the device to reboot: nothing more runs in this boot. */
const REBOOT_REQUESTED = Symbol('reboot requested');

const EMPTY: UpdateRecord = {
  schemaVersion: 1,
  state: UpdateState.Idle,
  deployment: null,
  previous: null,
  running: null,
  entries: 0,
  reason: null,
};

/**
 * Applies deployments one at a time: download (resumable) → verify → install → reboot if the
 * strategy needs one → health check → commit, or roll back. The record is saved (atomically)
 * before every step; `start()` resumes a saved in-between state. After a step asked the device
 * to reboot, the manager does nothing more until the agent starts again after the reboot.
 */
export class UpdateManager {
  private record: UpdateRecord;
  private readonly stateFile: string;
  private readonly downloads: string;
  private readonly kept: KeptSeeds;
  private work: Promise<void> = Promise.resolve();
  private abort = new AbortController();
  private rebootRequested = false;

  constructor(private readonly options: UpdateManagerOptions) {
    this.stateFile = join(options.dataDir, 'update-state.json');
    this.downloads = join(options.dataDir, 'downloads');
    this.kept = new KeptSeeds(join(options.dataDir, 'seeds'));
    mkdirSync(this.downloads, { recursive: true });
    this.record = existsSync(this.stateFile)
      ? (JSON.parse(readFileSync(this.stateFile, 'utf8')) as UpdateRecord)
      : { ...EMPTY };
  }

  get current(): Readonly<UpdateRecord> {
    return this.record;
  }

  /**
   * Resumes whatever the last run left in between (the RESUME_STATE table), restarts what every
   * other strategy committed (the app, the attached board's firmware), then applies a deployment
   * that was deferred by a reboot.
   */
  start(): Promise<void> {
    const resumeAt = RESUME_STATE[this.record.state];
    const interrupted = !TERMINAL_UPDATE_STATES.includes(resumeAt) && this.record.deployment !== null;
    // Every part of the interrupted deployment keeps what it installed: resuming a part's committed
    // version (the mcu-serial strategy flashes it back) would let the resumed health check pass.
    const inDeployment = new Set(
      interrupted ? partsOf(this.record.deployment!).map((part) => part.strategy) : [],
    );
    if (interrupted)
      this.options.logger.info({ state: this.record.state, resumeAt }, 'resuming an interrupted update');
    return this.enqueue(async () => {
      await Promise.all(
        Object.entries(this.options.strategies)
          .filter(([kind]) => !inDeployment.has(kind as Deployment['strategy']))
          .map(async ([kind, strategy]) => {
            try {
              await strategy?.resume();
            } catch (error) {
              // One strategy that cannot start must not keep the others (or the agent) down.
              this.options.logger.error(
                { err: error, strategy: kind },
                'could not resume what was committed',
              );
            }
          }),
      );
      if (interrupted) {
        // The installed version died with the agent: start it before checking it. Firmware runs on
        // its board by itself, and resuming mcu-serial would flash the committed firmware back.
        if (resumeAt === UpdateState.HealthChecking)
          for (const kind of inDeployment)
            if (kind !== 'mcu-serial') await this.options.strategies[kind]?.resume();
        await this.runFrom(resumeAt, true);
      }
      const deferred = this.record.deferred;
      if (deferred && TERMINAL_UPDATE_STATES.includes(this.record.state)) await this.begin(deferred);
    });
  }

  /** Reconciles toward a desired deployment; repeated or already-finished deployments change nothing. */
  apply(deployment: Deployment | null): Promise<void> {
    return this.enqueue(() => this.begin(deployment));
  }

  private async begin(deployment: Deployment | null): Promise<void> {
    if (deployment === null) return;
    if (this.record.deployment?.id === deployment.id) {
      const reported = REPORTED_AS[this.record.state];
      if (reported && TERMINAL_UPDATE_STATES.includes(this.record.state))
        this.send(reported, this.record.reason ?? undefined);
      return;
    }
    if (this.rebootRequested) {
      // The device is going down to finish the current deployment; this one waits in the record.
      this.record = { ...this.record, deferred: deployment };
      writeJsonAtomically(this.stateFile, this.record);
      this.options.logger.info(
        { deploymentId: deployment.id },
        'deployment deferred until the device has rebooted',
      );
      return;
    }
    const missing = partsOf(deployment).find((part) => !this.options.strategies[part.strategy]);
    if (missing) {
      this.options.report({
        deploymentId: deployment.id,
        state: 'failed',
        reason: `this agent has no ${missing.strategy} strategy`,
      });
      return;
    }
    // Whatever runs now is what a rollback returns to (an update cut short never changed it).
    const { running, runningByStrategy } = this.record;
    this.record = {
      schemaVersion: 1,
      state: UpdateState.Idle,
      deployment,
      previous: running,
      running,
      ...(runningByStrategy ? { runningByStrategy, previousByStrategy: runningByStrategy } : {}),
      installedParts: 0,
      entries: 0,
      reason: null,
    };
    await this.runFrom(UPDATE_TRANSITIONS[UpdateState.Idle][UpdateEvent.Start] as UpdateState, false);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.work;
    for (const strategy of Object.values(this.options.strategies)) await strategy?.stop();
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    this.work = this.work
      .then(work)
      .catch((error: unknown) => this.options.logger.error({ err: error }, 'update step failed'));
    return this.work;
  }

  private async runFrom(initial: UpdateState, resumed: boolean): Promise<void> {
    let state = initial;
    let reentered = resumed;
    while (!TERMINAL_UPDATE_STATES.includes(state)) {
      this.save(state, reentered);
      reentered = false;
      if (this.record.entries > MAX_STATE_ENTRIES) {
        if (state === UpdateState.RollingBack) {
          // Nothing safer is left to try; stay put and say so rather than loop.
          this.options.logger.error(
            { deploymentId: this.record.deployment?.id },
            'rollback keeps failing; leaving the device for an operator',
          );
          return;
        }
        state =
          this.next(UpdateEvent.Unhealthy) ?? this.next(UpdateEvent.Rejected) ?? UpdateState.RollingBack;
        this.record.reason = `update loop: entered ${this.record.state} ${this.record.entries} times`;
        continue;
      }
      const event = await this.step(state);
      // Stopping: the saved state is where the next start resumes, whatever this step concluded.
      if (this.abort.signal.aborted) return;
      if (event === REBOOT_REQUESTED) {
        this.rebootRequested = true;
        this.options.logger.info(
          { deploymentId: this.record.deployment?.id, state },
          'waiting for the device to reboot',
        );
        return;
      }
      const next = this.next(event);
      if (!next) throw new Error(`no transition from ${state} on ${event}`);
      state = next;
    }
    this.save(state, false);
  }

  private next(event: UpdateEvent): UpdateState | null {
    return UPDATE_TRANSITIONS[this.record.state][event] ?? null;
  }

  private async step(state: UpdateState): Promise<UpdateEvent | typeof REBOOT_REQUESTED> {
    const deployment = this.record.deployment as Deployment;
    const parts = partsOf(deployment);
    const signal = this.abort.signal;
    try {
      const strategyOf = (part: DeploymentStep): UpdateStrategy => {
        const strategy = this.options.strategies[part.strategy];
        if (!strategy)
          throw new BoardfleetError(
            'no-strategy',
            `this agent has no ${part.strategy} strategy (any more) to finish ${part.artifact} ${part.version}`,
          );
        return strategy;
      };
      switch (state) {
        case UpdateState.Downloading: {
          const transfers: Transfer[] = [];
          for (const [index, part] of parts.entries())
            transfers.push(
              await downloadPart(
                { ...this.options, downloads: this.downloads, kept: this.kept, signal },
                {
                  part,
                  strategy: strategyOf(part),
                  runningVersion: this.runningVersionOf(part),
                  siblings: parts.map((sibling) => sibling.sha256),
                },
                { index, of: parts.length },
              ),
            );
          this.options.report({
            deploymentId: deployment.id,
            state: 'downloading',
            progress: 100,
            transfer: combinedTransfer(transfers),
          });
          return UpdateEvent.Downloaded;
        }
        case UpdateState.Verifying:
          for (const part of parts) await this.verify(part);
          return UpdateEvent.Verified;
        case UpdateState.Installing: {
          await this.waitUntilActivationAllowed(deployment.id, signal);
          for (const [index, part] of parts.entries()) {
            if (index < (this.record.installedParts ?? 0)) continue;
            const manifest = await this.verify(part);
            const { needsReboot } = await strategyOf(part).install(
              this.downloadOf(part).artifact,
              manifest,
              signal,
            );
            if (needsReboot && parts.length > 1)
              throw new BoardfleetError(
                'composite-needs-reboot',
                `${part.artifact} ${part.version} needs a reboot, which a deployment of several parts cannot take`,
              );
            this.record.installedParts = index + 1;
            writeJsonAtomically(this.stateFile, this.record);
            if (needsReboot) return UpdateEvent.NeedsReboot;
          }
          return UpdateEvent.Installed;
        }
        case UpdateState.AwaitingReboot: {
          const rebooting = rebootable(strategyOf(parts[0]!));
          const outcome = await rebooting.rebootOutcome();
          if (!outcome.rebooted) {
            this.options.logger.info({ deploymentId: deployment.id }, 'rebooting into the new version');
            await rebooting.reboot('new');
            return REBOOT_REQUESTED;
          }
          if (outcome.runsNew) return UpdateEvent.Rebooted;
          this.record.reason = outcome.reason;
          return UpdateEvent.Unhealthy;
        }
        case UpdateState.HealthChecking: {
          // Every part must be healthy before any is committed: one release, one health gate.
          const manifests: ArtifactManifest[] = [];
          for (const part of parts) {
            const manifest = await this.verify(part);
            const result = await strategyOf(part).healthCheck(manifest, signal);
            if (!result.healthy) {
              this.record.reason =
                parts.length > 1 ? `${part.artifact} ${part.version}: ${result.reason}` : result.reason;
              return UpdateEvent.Unhealthy;
            }
            manifests.push(manifest);
          }
          for (const [index, part] of parts.entries()) {
            const strategy = strategyOf(part);
            await strategy.commit(manifests[index]!);
            this.record.runningByStrategy = {
              ...this.record.runningByStrategy,
              [part.strategy]: { artifact: part.artifact, version: part.version },
            };
            // What is committed now is what the next update is assembled from.
            this.kept.keep(strategy.kind, this.downloadOf(part), !strategy.seeds);
          }
          this.record.running = { artifact: deployment.artifact, version: deployment.version };
          return UpdateEvent.Healthy;
        }
        case UpdateState.RollingBack: {
          // Every installed part goes back, the last installed first; a deployment of one part
          // that never installed still runs its strategy's rollback (what it did before).
          const installed = parts.length > 1 ? parts.slice(0, this.record.installedParts ?? 0) : parts;
          let needsReboot = false;
          try {
            for (const part of [...installed].reverse()) {
              const strategy = strategyOf(part);
              ({ needsReboot } = await strategy.rollback(this.previousOf(part)));
              if (needsReboot) {
                this.options.logger.info({ deploymentId: deployment.id }, 'rebooting into the old version');
                await rebootable(strategy).reboot('old');
              }
            }
          } catch (error) {
            // Say why the update failed and that the old version could not be restored.
            throw new BoardfleetError(
              'rollback-failed',
              `${this.record.reason ?? 'update failed'}; rolling back failed too: ${(error as Error).message}`,
              { cause: error },
            );
          }
          // The old version runs only after the reboot; the next start finds it and finishes.
          if (needsReboot) return REBOOT_REQUESTED;
          this.record.running = this.record.previous;
          this.record.runningByStrategy = this.record.previousByStrategy;
          for (const part of parts) discardDownload(this.downloadOf(part));
          return UpdateEvent.RollbackDone;
        }
        default:
          throw new Error(`no step for ${state}`);
      }
    } catch (error) {
      this.record.reason = isBoardfleetError(error)
        ? error.message
        : `unexpected: ${(error as Error).message}`;
      this.options.logger.warn({ err: error, state, deploymentId: deployment.id }, 'update step failed');
      if (state === UpdateState.Downloading || state === UpdateState.Verifying) {
        // A bad download is discarded, so the next attempt starts clean.
        if (isBoardfleetError(error) && error.code !== 'download-truncated')
          for (const part of parts) discardDownload(this.downloadOf(part));
        return UpdateEvent.Rejected;
      }
      // Refused before anything changed; once a part of several is in, the others go back with it.
      if (
        state === UpdateState.Installing &&
        error instanceof InstallRefusedError &&
        !this.record.installedParts
      ) {
        for (const part of parts) discardDownload(this.downloadOf(part));
        return UpdateEvent.Rejected;
      }
      return UpdateEvent.Unhealthy;
    }
  }

  private downloadOf(part: DeploymentStep): ReturnType<typeof downloadFiles> {
    return downloadFiles(this.downloads, part.sha256);
  }

  /** What ran of this part's kind before the deployment: what its rollback brings back. */
  private previousOf(part: DeploymentStep): RunningVersion | null {
    return this.record.previousByStrategy?.[part.strategy] ?? this.record.previous;
  }

  /** Waits while the update lock is held or the update window is closed, saying so once. */
  private async waitUntilActivationAllowed(deploymentId: string, signal: AbortSignal): Promise<void> {
    const gate = this.options.activationGate;
    if (!gate) return;
    let said: string | null = null;
    for (let reason = gate(new Date()); reason !== null; reason = gate(new Date())) {
      if (reason !== said) {
        said = reason;
        this.options.logger.info({ deploymentId, reason }, 'activation deferred');
        this.options.report({ deploymentId, state: 'installing', reason: `deferred: ${reason}` });
      }
      await delay(this.options.activationRecheckMs ?? 5_000, undefined, { signal });
    }
  }

  private verify(part: DeploymentStep): Promise<ArtifactManifest> {
    return verifyDeployment({
      deployment: part,
      fleetPublicKeyPem: this.options.fleetPublicKeyPem,
      downloadedPath: this.downloadOf(part).artifact,
      runningVersion: this.runningVersionOf(part),
    });
  }

  /** The version running of the part's artifact, what a downgrade is measured against. */
  private runningVersionOf(part: DeploymentStep): string | null {
    const previous = this.previousOf(part);
    return previous?.artifact === part.artifact ? previous.version : null;
  }

  /** Writes the record before the step runs, then tells the server (reporting after saving keeps it truthful). */
  private save(state: UpdateState, reentered: boolean): void {
    const entries = state === this.record.state || reentered ? this.record.entries + 1 : 1;
    this.record = { ...this.record, state, entries };
    writeJsonAtomically(this.stateFile, this.record);
    const reported = REPORTED_AS[state];
    if (reported)
      this.send(
        reported,
        state === UpdateState.Failed || state === UpdateState.RolledBack
          ? (this.record.reason ?? undefined)
          : undefined,
      );
    this.options.afterSave?.(state);
  }

  private send(state: DeploymentReport, reason?: string): void {
    const deploymentId = this.record.deployment?.id;
    if (deploymentId) this.options.report({ deploymentId, state, ...(reason ? { reason } : {}) });
  }
}

/** The reboot half of a strategy whose install asked for a reboot. */
function rebootable(strategy: UpdateStrategy): Required<Pick<UpdateStrategy, 'reboot' | 'rebootOutcome'>> {
  const { reboot, rebootOutcome } = strategy;
  if (!reboot || !rebootOutcome)
    throw new BoardfleetError(
      'no-reboot',
      `the ${strategy.kind} strategy asked for a reboot but cannot reboot the device`,
    );
  return { reboot: reboot.bind(strategy), rebootOutcome: rebootOutcome.bind(strategy) };
}
