import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import type { ActivationGate } from './activation-gate.ts';
import type { DeploymentReport, DesiredState, Transfer } from '../../protocol/schemas.ts';
import { retryTransient } from './artifact-download.ts';
import { transferArtifact } from './artifact-transfer.ts';
import { type AssemblyStep, discardDownload, downloadFiles } from './delta-download.ts';
import type { FleetMetadata, SignedChunkIndex } from './fleet-metadata.ts';
import { verifyDeployment, verifySignedManifest } from './artifact-verify.ts';
import {
  MAX_STATE_ENTRIES,
  REPORTED_AS,
  RESUME_STATE,
  TERMINAL_UPDATE_STATES,
  UPDATE_TRANSITIONS,
  UpdateEvent,
  type UpdateRecord,
  UpdateState,
} from './update-state-machine.ts';
import { writeJsonAtomically } from '../../lib/atomic-file.ts';
import { fileSeed, KeptSeeds, type SeedSource } from './update-seeds.ts';
import { InstallRefusedError, type UpdateStrategy } from './update-strategy.ts';

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
    const updating = interrupted ? this.record.deployment?.strategy : undefined;
    if (interrupted)
      this.options.logger.info({ state: this.record.state, resumeAt }, 'resuming an interrupted update');
    return this.enqueue(async () => {
      await Promise.all(
        Object.entries(this.options.strategies)
          .filter(([kind]) => kind !== updating)
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
        // The installed version died with the agent: start it before checking it.
        if (resumeAt === UpdateState.HealthChecking && updating)
          await this.options.strategies[updating]?.resume();
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
    const strategy = this.options.strategies[deployment.strategy];
    if (!strategy) {
      this.options.report({
        deploymentId: deployment.id,
        state: 'failed',
        reason: `this agent has no ${deployment.strategy} strategy`,
      });
      return;
    }
    // Whatever runs now is what a rollback returns to (an update cut short never changed it).
    const running = this.record.running;
    this.record = {
      schemaVersion: 1,
      state: UpdateState.Idle,
      deployment,
      previous: running,
      running,
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
    const artifactPath = this.downloadOf(deployment).artifact;
    const signal = this.abort.signal;
    try {
      const strategy = this.options.strategies[deployment.strategy];
      if (!strategy)
        throw new BoardfleetError(
          'no-strategy',
          `this agent has no ${deployment.strategy} strategy (any more) to finish ${deployment.artifact} ${deployment.version}`,
        );
      switch (state) {
        case UpdateState.Downloading: {
          verifySignedManifest(deployment, this.options.fleetPublicKeyPem);
          let signedChunkIndex: SignedChunkIndex | null | undefined;
          await retryTransient(
            signal,
            async () => (signedChunkIndex = await this.checkSignedTarget(deployment)),
          );
          let lastDecile = -1;
          const transfer = await transferArtifact({
            deployment,
            serverUrl: this.options.serverUrl,
            ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
            auth: this.options.auth,
            fleetPublicKeyPem: this.options.fleetPublicKeyPem,
            downloads: this.downloads,
            seeds: await this.seedsOf(strategy),
            baseIndex: this.kept.baseIndex(strategy.kind),
            ...(signedChunkIndex === undefined ? {} : { signedChunkIndex }),
            signal,
            logger: this.options.logger,
            ...(this.options.onAssemblyStep ? { onAssemblyStep: this.options.onAssemblyStep } : {}),
            onProgress: (received, total) => {
              // 100 % is said once, with how the artifact came.
              const decile = Math.min(9, Math.floor((received / total) * 10));
              if (decile !== lastDecile) {
                lastDecile = decile;
                this.options.report({
                  deploymentId: deployment.id,
                  state: 'downloading',
                  progress: decile * 10,
                });
              }
            },
          });
          this.options.report({ deploymentId: deployment.id, state: 'downloading', progress: 100, transfer });
          return UpdateEvent.Downloaded;
        }
        case UpdateState.Verifying:
          await this.verify(deployment, artifactPath);
          return UpdateEvent.Verified;
        case UpdateState.Installing: {
          const manifest = await this.verify(deployment, artifactPath);
          await this.waitUntilActivationAllowed(deployment.id, signal);
          const { needsReboot } = await strategy.install(artifactPath, manifest, signal);
          return needsReboot ? UpdateEvent.NeedsReboot : UpdateEvent.Installed;
        }
        case UpdateState.AwaitingReboot: {
          const rebooting = rebootable(strategy);
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
          const manifest = await this.verify(deployment, artifactPath);
          const result = await strategy.healthCheck(manifest, signal);
          if (!result.healthy) {
            this.record.reason = result.reason;
            return UpdateEvent.Unhealthy;
          }
          await strategy.commit(manifest);
          this.record.running = { artifact: deployment.artifact, version: deployment.version };
          // What is committed now is what the next update is assembled from.
          this.kept.keep(strategy.kind, this.downloadOf(deployment), !strategy.seeds);
          return UpdateEvent.Healthy;
        }
        case UpdateState.RollingBack: {
          let needsReboot: boolean;
          try {
            ({ needsReboot } = await strategy.rollback(this.record.previous));
            if (needsReboot) {
              this.options.logger.info({ deploymentId: deployment.id }, 'rebooting into the old version');
              await rebootable(strategy).reboot('old');
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
          discardDownload(this.downloadOf(deployment));
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
          discardDownload(this.downloadOf(deployment));
        return UpdateEvent.Rejected;
      }
      if (state === UpdateState.Installing && error instanceof InstallRefusedError) {
        discardDownload(this.downloadOf(deployment));
        return UpdateEvent.Rejected;
      }
      return UpdateEvent.Unhealthy;
    }
  }

  /**
   * What a delta of this strategy's next version can be assembled from: its own seeds, or the
   * artifact kept at its last commit; when there is nothing, why.
   */
  private async seedsOf(strategy: UpdateStrategy): Promise<{ sources: SeedSource[]; none: string }> {
    const none = `no seed: nothing on this device to assemble the ${strategy.kind} update from`;
    if (!strategy.seeds) return { sources: fileSeed(this.kept.artifactPath(strategy.kind)), none };
    try {
      return { sources: await strategy.seeds(), none };
    } catch (error) {
      return { sources: [], none: `no seed: ${(error as Error).message}` };
    }
  }

  private downloadOf(deployment: Deployment): ReturnType<typeof downloadFiles> {
    return downloadFiles(this.downloads, deployment.sha256);
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

  private verify(deployment: Deployment, artifactPath: string): Promise<ArtifactManifest> {
    return verifyDeployment({
      deployment,
      fleetPublicKeyPem: this.options.fleetPublicKeyPem,
      downloadedPath: artifactPath,
      runningVersion: this.runningVersionOf(deployment),
    });
  }

  /** The version running of the deployment's artifact, what a downgrade is measured against. */
  private runningVersionOf(deployment: Deployment): string | null {
    return this.record.previous?.artifact === deployment.artifact
      ? (this.record.previous?.version ?? null)
      : null;
  }

  /**
   * Before a byte is downloaded: the fleet's targets metadata signs this deployment (when the
   * fleet has a TUF root; until then the signed manifest is the check). Its cost is logged.
   */
  /**
   * Checks the deployment against the fleet's TUF targets, when the device trusts a root; returns
   * the chunk index targets signs for it then (null: none), undefined without TUF.
   */
  private async checkSignedTarget(deployment: Deployment): Promise<SignedChunkIndex | null | undefined> {
    const metadata = this.options.signedTargets;
    if (!metadata || !(await metadata.hasTrustedRoot())) return undefined;
    const cost = await metadata.check(
      deployment,
      this.runningVersionOf(deployment),
      deployment.rollbackOrder ?? null,
    );
    this.options.logger.info(
      { deploymentId: deployment.id, metadataBytes: cost.bytes, metadataMs: Math.round(cost.milliseconds) },
      `${deployment.artifact} ${deployment.version} is signed by the fleet's targets metadata`,
    );
    return cost.chunkIndex;
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
