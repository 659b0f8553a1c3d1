import type { ArtifactManifest } from '../../protocol/manifest.ts';

/**
 * How one kind of artifact is installed. The update manager drives every strategy through the
 * same steps; each step must be idempotent (it can be re-run after a crash):
 *
 * - `install` puts the new version in place beside the old one and activates it
 *   (returns `needsReboot` when the new version only runs after a reboot, as an A/B slot does);
 * - `healthCheck` says whether the new version works (after the reboot, if there was one);
 * - `commit` makes the new version the one to keep; `rollback` brings the old one back.
 *
 * Strategies: `app-bundle` (here), `mcu-serial` (an attached Arduino), `linux-ab` (A/B root
 * slots with the Raspberry Pi's tryboot) and `vm` (unikernel images) plug in the same way.
 */
export interface UpdateStrategy {
  readonly kind: 'app-bundle' | 'mcu-serial' | 'linux-ab' | 'vm';
  install(
    artifactPath: string,
    manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ needsReboot: boolean }>;
  healthCheck(
    manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ healthy: true } | { healthy: false; reason: string }>;
  commit(manifest: ArtifactManifest): Promise<void>;
  /** Brings back `previous` (or nothing, when nothing ran before). */
  rollback(previous: { artifact: string; version: string } | null): Promise<void>;
  /** Starts what was committed (agent start-up). */
  resume(): Promise<void>;
  stop(): Promise<void>;
}
