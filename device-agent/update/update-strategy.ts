import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import type { SeedSource } from './update-seeds.ts';

/** Where a strategy asks the device to reboot to: what `install` armed, or what was committed. */
export type RebootTarget = 'new' | 'old';

/** What a reboot-needing strategy finds after `install` asked for a reboot. */
export type RebootOutcome =
  /** The device has not rebooted since the reboot was asked for (the agent alone restarted). */
  | { rebooted: false }
  | { rebooted: true; runsNew: true }
  /** The device came back on the old version: the new one did not come up, or the power was cut. */
  | { rebooted: true; runsNew: false; reason: string };

/**
 * How one kind of artifact is installed. The update manager drives every strategy through the
 * same steps; each step must be idempotent (it can be re-run after a crash or a power cut):
 *
 * - `install` puts the new version in place beside the old one and activates it, or arms it and
 *   returns `needsReboot` when the new version only runs after a reboot (an A/B root slot);
 * - `healthCheck` says whether the new version works (after the reboot, if there was one);
 * - `commit` makes the new version the one to keep; `rollback` brings the old one back, and
 *   returns `needsReboot` when the old one only runs again after a reboot.
 *
 * A strategy that ever returns `needsReboot` also implements `reboot` and `rebootOutcome`. The
 * manager saves its state first, then calls `reboot`, and does nothing more in this boot; when
 * the agent starts again it asks `rebootOutcome` where the device stands.
 *
 * Strategies: `app-bundle`, `mcu-serial` (an attached Arduino), `linux-ab` (A/B root slots with
 * the Raspberry Pi's tryboot), `vm` (unikernel images run as supervised VMs beside each other),
 * `oci` (OCI images run with crun).
 */
export interface UpdateStrategy {
  readonly kind: 'app-bundle' | 'mcu-serial' | 'linux-ab' | 'vm' | 'oci';
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
  rollback(previous: { artifact: string; version: string } | null): Promise<{ needsReboot: boolean }>;
  /** Starts what was committed (agent start-up). */
  resume(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Asks the device to reboot into what `install` armed (`new`) or into what is committed
   * (`old`). Resolves once the reboot was asked for; the device goes down soon after.
   */
  reboot?(into: RebootTarget): Promise<void>;
  /** After `install` asked for a reboot: has the device rebooted since, and into which version? */
  rebootOutcome?(): Promise<RebootOutcome>;
  /**
   * What a delta update of this kind is assembled from: the parts of the device that hold the
   * version it runs (a slot's root filesystem and boot files). A strategy without it gets the
   * last committed artifact file, which the update manager keeps for it; one that returns
   * nothing is always downloaded whole.
   */
  seeds?(): Promise<SeedSource[]>;
}

/**
 * Thrown by `install` when it refuses an artifact before changing anything the device runs or
 * boots: the update then fails (nothing to roll back) instead of rolling back.
 */
export class InstallRefusedError extends BoardfleetError {}
