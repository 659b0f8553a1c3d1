import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomically } from '../../lib/atomic-file.ts';
import { DeploymentReport, type DesiredState, type Health } from '../../protocol/schemas.ts';
import { downloadArtifact, retryTransient } from '../update/artifact-download.ts';
import { verifyDeployment } from '../update/artifact-verify.ts';
import type { RunningVersion } from '../update/update-state-machine.ts';
import type { Logger } from 'pino';
import type { Collectors } from './collectors.ts';
import type { DeploymentApplier, DeviceAgent } from './device-agent.ts';
import { AppliedConfig, DeviceConfigStore } from './device-config.ts';

/** Plausible, slowly wandering health for a simulated device (a Pi-sized machine). */
export class SyntheticCollectors implements Collectors {
  private load = Math.random() * 0.5;
  private temperature = 40 + Math.random() * 10;
  private readonly startedAt = Date.now();

  constructor(
    private readonly name: string,
    private readonly board: string,
    private readonly agentVersion: string,
  ) {}

  health(): Health {
    this.load = Math.max(0, this.load + (Math.random() - 0.5) * 0.2);
    this.temperature = Math.min(85, Math.max(30, this.temperature + (Math.random() - 0.5)));
    const total = 4 * 2 ** 30;
    return {
      at: Date.now(),
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      load: [this.load, this.load * 0.9, this.load * 0.8],
      memory: { totalBytes: total, availableBytes: Math.round(total * (0.5 + Math.random() * 0.2)) },
      disk: { totalBytes: 32 * 2 ** 30, freeBytes: 20 * 2 ** 30 },
      cpuTemperatureCelsius: Math.round(this.temperature * 10) / 10,
      agentRssBytes: 40 * 2 ** 20,
    };
  }

  inventory() {
    return {
      board: this.board,
      os: 'Boardfleet simulated device',
      kernel: 'simulated',
      architecture: 'arm64',
      agentVersion: this.agentVersion,
      hostname: this.name,
    };
  }
}

/** What a simulated device remembers across restarts, as the real agent's update record does. */
interface SimulatedUpdateRecord {
  /** The last deployment taken up, and how it ended: a repeated one is answered with that. */
  deploymentId: string | null;
  outcome: { state: DeploymentReport; reason?: string } | null;
  running: RunningVersion | null;
}

/**
 * Takes deployments the way a device would on the wire (it really downloads the artifact with
 * its credential and checks the fleet signature, sha256 and size) but installs nothing: for
 * demos, dashboards and load tests. It reports what the real agent reports: a rollback is a
 * deployment like any other (the earlier one again, which may be older), taken after the one
 * before it, the version it runs is kept across restarts, and a deployment it already finished is
 * answered with its outcome.
 */
export class SimulatedUpdates implements DeploymentApplier {
  private readonly recordPath: string;
  private record: SimulatedUpdateRecord;
  /** One deployment at a time, in the order they arrived (a rollback waits for the update it undoes). */
  private work: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      /** Downloads go here, and the record of what the device runs. */
      dataDir: string;
      serverUrl: string;
      auth: { deviceId: string; secret: string };
      fleetPublicKeyPem: string;
      report: (report: {
        deploymentId: string;
        state: DeploymentReport;
        progress?: number;
        reason?: string;
      }) => void;
    },
  ) {
    this.recordPath = join(options.dataDir, 'simulated-update.json');
    this.record = existsSync(this.recordPath)
      ? (JSON.parse(readFileSync(this.recordPath, 'utf8')) as SimulatedUpdateRecord)
      : { deploymentId: null, outcome: null, running: null };
  }

  get current(): { running: RunningVersion | null } {
    return { running: this.record.running };
  }

  apply(deployment: DesiredState['deployment']): Promise<void> {
    const taken = this.work.then(() => this.take(deployment));
    this.work = taken.catch(() => undefined);
    return taken;
  }

  private async take(deployment: DesiredState['deployment']): Promise<void> {
    if (!deployment) return;
    const report = (state: DeploymentReport, extra: { progress?: number; reason?: string } = {}) =>
      this.options.report({ deploymentId: deployment.id, state, ...extra });
    const reportOutcome = () => {
      const outcome = this.record.outcome;
      if (outcome) report(outcome.state, outcome.reason ? { reason: outcome.reason } : {});
    };
    if (deployment.id === this.record.deploymentId) {
      reportOutcome();
      return;
    }
    const running = this.record.running;
    this.save({ deploymentId: deployment.id, outcome: null, running });
    const path = join(this.options.dataDir, `${deployment.sha256}.artifact`);
    try {
      report(DeploymentReport.Downloading, { progress: 0 });
      let lastDecile = 0;
      // Retried as the real agent retries (a busy server's connect timeout is no failed update).
      await retryTransient(new AbortController().signal, () =>
        downloadArtifact({
          url: new URL(deployment.url, this.options.serverUrl).toString(),
          destination: path,
          expectedSize: deployment.size,
          auth: this.options.auth,
          onProgress: (received, total) => {
            const decile = Math.floor((received / total) * 10);
            if (decile > lastDecile)
              report(DeploymentReport.Downloading, { progress: (lastDecile = decile) * 10 });
          },
        }),
      );
      report(DeploymentReport.Installing);
      await verifyDeployment({
        deployment,
        fleetPublicKeyPem: this.options.fleetPublicKeyPem,
        downloadedPath: path,
        runningVersion: running?.artifact === deployment.artifact ? running.version : null,
      });
      this.finish(
        { artifact: deployment.artifact, version: deployment.version },
        { state: DeploymentReport.CommittedOnDevice },
      );
    } catch (error) {
      // Nothing was installed: the device runs what it ran before.
      this.finish(running, { state: DeploymentReport.Failed, reason: (error as Error).message });
    } finally {
      rmSync(path, { force: true });
    }
    reportOutcome();
  }

  async stop(): Promise<void> {}

  private finish(
    running: RunningVersion | null,
    outcome: NonNullable<SimulatedUpdateRecord['outcome']>,
  ): void {
    this.save({ ...this.record, running, outcome });
  }

  private save(record: SimulatedUpdateRecord): void {
    this.record = record;
    writeJsonAtomically(this.recordPath, record);
  }
}

/**
 * A simulated device's configuration variables, kept in its data dir like a real agent's: applied
 * from each desired state and reported at once, as a real device without an app does.
 */
export class SimulatedConfig {
  private readonly store: DeviceConfigStore;
  private readonly applied: AppliedConfig;
  private agent: DeviceAgent | null = null;

  constructor(dataDir: string, logger: Pick<Logger, 'info' | 'warn'>) {
    this.store = new DeviceConfigStore(dataDir);
    this.applied = new AppliedConfig(this.store, {
      restart: async () => undefined,
      applied: () => this.agent?.refreshInventory(),
      logger,
    });
  }

  /** For the agent's `appliedConfigHash` option. */
  readonly appliedConfigHash = (): string => this.applied.hash;

  /** Applies the config of the desired states this agent receives. */
  follow(agent: DeviceAgent): void {
    this.agent = agent;
    agent.on('desired', (desired) => this.store.apply(desired.config));
  }
}
