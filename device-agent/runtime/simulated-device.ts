import { join } from 'node:path';
import { DeploymentReport, type DesiredState, type Health } from '../../protocol/schemas.ts';
import { downloadArtifact } from '../update/artifact-download.ts';
import { verifyDeployment } from '../update/artifact-verify.ts';
import type { RunningVersion } from '../update/update-state-machine.ts';
import type { Collectors } from './collectors.ts';
import type { DeploymentApplier } from './device-agent.ts';

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

/**
 * Takes deployments the way a device would on the wire (it really downloads the artifact with
 * its credential and checks the fleet signature, sha256 and size) but installs nothing: for
 * demos, dashboards and load tests.
 */
export class SimulatedUpdates implements DeploymentApplier {
  current: { running: RunningVersion | null } = { running: null };
  private readonly handled = new Set<string>();

  constructor(
    private readonly options: {
      dataDir: string;
      serverUrl: string;
      auth: { deviceId: string; secret: string };
      fleetPublicKeyPem: string;
      report: (report: { deploymentId: string; state: DeploymentReport; reason?: string }) => void;
    },
  ) {}

  async apply(deployment: DesiredState['deployment']): Promise<void> {
    if (!deployment || this.handled.has(deployment.id)) return;
    this.handled.add(deployment.id);
    const report = (state: DeploymentReport, reason?: string) =>
      this.options.report({ deploymentId: deployment.id, state, ...(reason ? { reason } : {}) });
    const path = join(this.options.dataDir, `${deployment.sha256}.artifact`);
    try {
      report(DeploymentReport.Downloading);
      await downloadArtifact({
        url: new URL(deployment.url, this.options.serverUrl).toString(),
        destination: path,
        expectedSize: deployment.size,
        auth: this.options.auth,
      });
      report(DeploymentReport.Installing);
      await verifyDeployment({
        deployment,
        fleetPublicKeyPem: this.options.fleetPublicKeyPem,
        downloadedPath: path,
        runningVersion: this.current.running?.version ?? null,
      });
      this.current.running = { artifact: deployment.artifact, version: deployment.version };
      report(DeploymentReport.CommittedOnDevice);
    } catch (error) {
      report(DeploymentReport.Failed, (error as Error).message);
    }
  }

  async stop(): Promise<void> {}
}
