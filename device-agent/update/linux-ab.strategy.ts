import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BoardfleetError, isBoardfleetError } from '../../protocol/errors.ts';
import {
  BOOT_CONFIG,
  DEFAULT_TRIAL_METHOD,
  type ImageInfo,
  MOUNTS,
  otherSlot,
  parseTrialFile,
  type Slot,
  type SlotDevices,
  slotDirectory,
  slotFromCmdline,
  slotOfBootConfig,
  TRIAL_METHODS,
  type TrialMethod,
  trialFileText,
  withBootSlot,
} from '../../protocol/linux-ab-layout.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { fsyncDirectory, readJson, writeFileAtomically, writeJsonAtomically } from '../../lib/atomic-file.ts';
import type { RebootMode } from '../lib/device-reboot.ts';
import { blockDeviceCapacity, writePayloadToSlot } from './linux-ab-slot-writer.ts';
import { filesUnder, type SeedSource, squashfsSeed } from './update-seeds.ts';
import {
  InstallRefusedError,
  type RebootOutcome,
  type RebootTarget,
  type UpdateStrategy,
} from './update-strategy.ts';

export interface LinuxAbOptions {
  /** The boot FAT's mount point (`MOUNTS.boot`): config.txt, tryboot.txt, slot-a/, slot-b/. */
  bootDir: string;
  /** `MOUNTS.slotDevices`: the block devices of the partitions. */
  slotsFile: string;
  /**
   * `MOUNTS.imageInfo` (the default): its `abTrial` says how this image tries a slot once; an
   * image without it (or without the file) uses the firmware's tryboot.
   */
  imageInfoFile?: string;
  /** `/proc/cmdline`: says which slot runs (`boardfleet.slot=`). */
  cmdlineFile: string;
  /** `/proc/sys/kernel/random/boot_id`: changes at every boot, so a reboot can be told from an agent restart. */
  bootIdFile: string;
  /** Where the strategy keeps its record of the slot it armed: the agent's data dir, which both slots share. */
  stateDir: string;
  /** This device's board: a payload built for another board is refused. Null: not checked. */
  board: string | null;
  /** Reboots the device (production: {@link rebootDevice}). */
  reboot: (mode: RebootMode) => Promise<void>;
  /** Whether the agent is connected to its broker: what "the new slot is healthy" means. */
  connected: () => boolean;
  /** How long the agent on the new slot has to connect before the slot counts as unhealthy. */
  healthTimeoutSeconds: number;
  log?: (line: string) => void;
}

/** Kept in the state dir from install until the next install: which slot was armed, from which. */
interface Attempt {
  schemaVersion: 1;
  artifact: string;
  version: string;
  /** The slot the update goes into. */
  slot: Slot;
  /** The slot that ran (and was committed) when the update started: the rollback target. */
  from: Slot;
  /** The boot id of the boot that asked for the reboot into the slot; null until it was asked for. */
  trybootRequestedIn: string | null;
  /** How the slot is tried, as the image that installed it said; absent in older records: tryboot. */
  trial?: TrialMethod;
}

const CONNECTED_POLL_MS = 250;

/**
 * A/B root slots tried once before they are committed (the layout is protocol/linux-ab-layout.ts).
 * `install` writes the payload's root filesystem into the slot that does not run, reads it back
 * against payload.json's sha256 and puts the slot's kernel, initramfs, device trees and rendered
 * cmdline.txt into its directory on the boot FAT. How the slot is then tried depends on the
 * image's {@link TrialMethod}:
 * - `firmware-tryboot`: install arms it in tryboot.txt (config.txt is not touched) and the reboot
 *   carries "0 tryboot": the firmware boots the new slot once, any later boot the committed one.
 *   On the new slot, once the agent is connected, `commit` points config.txt at it.
 * - `initramfs-trial` (Debian's kernel cannot pass "0 tryboot"): just before a plain reboot the
 *   strategy writes trial.txt and points config.txt at the new slot; our initramfs marks the first
 *   boot and, on a second one, restores config.txt and restarts. `commit` removes trial.txt.
 */
export class LinuxAbStrategy implements UpdateStrategy {
  readonly kind = 'linux-ab';

  constructor(private readonly options: LinuxAbOptions) {
    mkdirSync(options.stateDir, { recursive: true });
  }

  private get attemptFile(): string {
    return join(this.options.stateDir, 'linux-ab-attempt.json');
  }

  private get configFile(): string {
    return join(this.options.bootDir, BOOT_CONFIG.committed);
  }

  private get trybootFile(): string {
    return join(this.options.bootDir, BOOT_CONFIG.tryboot);
  }

  private get trialFile(): string {
    return join(this.options.bootDir, BOOT_CONFIG.trial);
  }

  /** How this image tries a slot once: image.json's `abTrial`, firmware tryboot when it has none. */
  trialMethod(): TrialMethod {
    const file = this.options.imageInfoFile ?? MOUNTS.imageInfo;
    const method = readJson<Partial<ImageInfo>>(file)?.abTrial ?? DEFAULT_TRIAL_METHOD;
    if (!TRIAL_METHODS.includes(method))
      throw new BoardfleetError(
        'unknown-trial-method',
        `${file} names the trial method "${String(method)}"; this agent knows ${TRIAL_METHODS.join(' and ')}`,
      );
    return method;
  }

  /** The slot the running kernel was booted from. */
  runningSlot(): Slot {
    const slot = slotFromCmdline(readFileSync(this.options.cmdlineFile, 'utf8'));
    if (!slot)
      throw new BoardfleetError(
        'not-a-slot-boot',
        `${this.options.cmdlineFile} has no boardfleet.slot=a or =b: this system was not booted from a Boardfleet A/B slot`,
      );
    return slot;
  }

  /**
   * The committed slot: the one config.txt names, unless trial.txt has that slot on trial (the
   * initramfs trial points config.txt at it before it is committed): then trial.txt's fallback.
   */
  committedSlot(): Slot {
    const slot = slotOfBootConfig(this.readBootFile(this.configFile));
    if (!slot)
      throw new BoardfleetError(
        'no-committed-slot',
        `${this.configFile} names no slot (no os_prefix=slot-a/ or slot-b/ line)`,
      );
    const trial = this.trial();
    return trial?.slot === slot ? trial.fallback : slot;
  }

  /** The slot tryboot.txt (or trial.txt) arms, or null when no slot is armed. */
  armedSlot(): Slot | null {
    if (existsSync(this.trybootFile)) return slotOfBootConfig(readFileSync(this.trybootFile, 'utf8'));
    return this.trial()?.slot ?? null;
  }

  private trial(): ReturnType<typeof parseTrialFile> {
    return existsSync(this.trialFile) ? parseTrialFile(readFileSync(this.trialFile, 'utf8')) : null;
  }

  async install(
    artifactPath: string,
    manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ needsReboot: boolean }> {
    const label = `${manifest.name} ${manifest.version}`;
    try {
      // The record of an earlier update goes first: a rollback of this one must never act on it.
      rmSync(this.attemptFile, { force: true });
      if (manifest.kind !== 'linux-image')
        throw new InstallRefusedError('wrong-kind', `${label} is ${manifest.kind}, not linux-image`);
      const running = this.runningSlot();
      const committed = this.committedSlot();
      if (running !== committed) {
        throw new InstallRefusedError(
          'slot-on-trial',
          `slot ${running} runs on trial (slot ${committed} is committed): refusing to overwrite the committed slot; reboot to return to slot ${committed} first`,
        );
      }
      const trial = this.trialMethod();
      const target = otherSlot(running);
      const device = this.slotDevices()[target];
      // Disarm first: tryboot.txt or trial.txt must never name a slot that is half written.
      this.disarm();
      writeJsonAtomically(this.attemptFile, {
        schemaVersion: 1,
        artifact: manifest.name,
        version: manifest.version,
        slot: target,
        from: running,
        trybootRequestedIn: null,
        trial,
      } satisfies Attempt);
      await writePayloadToSlot(
        artifactPath,
        { bootDir: this.options.bootDir, board: this.options.board, slot: target, device, label },
        signal,
      );
      if (trial === 'firmware-tryboot') {
        writeFileAtomically(this.trybootFile, withBootSlot(this.readBootFile(this.configFile), target), {
          syncDirectory: true,
        });
        this.options.log?.(`${label} is in slot ${target} (${device}) and armed in ${BOOT_CONFIG.tryboot}`);
      } else {
        this.options.log?.(`${label} is in slot ${target} (${device}); the reboot tries it once`);
      }
      return { needsReboot: true };
    } catch (error) {
      // Everything above happens before anything is armed: whatever failed, nothing that runs or boots changed.
      if (error instanceof InstallRefusedError || signal.aborted) throw error;
      throw new InstallRefusedError(
        isBoardfleetError(error) ? error.code : 'install-failed',
        `installing ${label} failed: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /**
   * The running slot as it is: the root filesystem at the start of its device (the squashfs the
   * payload carried, padded alike) and its directory on the boot FAT. Nothing is written to
   * either while a delta is assembled.
   */
  async seeds(): Promise<SeedSource[]> {
    const running = this.runningSlot();
    const device = this.slotDevices()[running];
    return [
      ...(await squashfsSeed(device, blockDeviceCapacity(device, statSync(device).isBlockDevice()))),
      ...filesUnder(join(this.options.bootDir, slotDirectory(running))),
    ];
  }

  async reboot(into: RebootTarget): Promise<void> {
    if (into === 'old') return this.options.reboot('normal');
    const attempt = this.requireAttempt();
    const trial = attempt.trial ?? DEFAULT_TRIAL_METHOD;
    if (trial === 'firmware-tryboot' && this.armedSlot() !== attempt.slot)
      throw new BoardfleetError(
        'not-armed',
        `${this.trybootFile} does not arm slot ${attempt.slot}: refusing a tryboot reboot into nothing`,
      );
    writeJsonAtomically(this.attemptFile, {
      ...attempt,
      trybootRequestedIn: this.bootId(),
    } satisfies Attempt);
    if (trial === 'firmware-tryboot') return this.options.reboot('tryboot');
    // trial.txt before config.txt: a boot in between must never find the new slot committed
    // without its trial (a boot of the old slot drops the trial.txt it finds).
    writeFileAtomically(this.trialFile, trialFileText(attempt.slot, attempt.from), { syncDirectory: true });
    this.pointConfigAt(attempt.slot);
    this.options.log?.(`slot ${attempt.slot} armed in ${BOOT_CONFIG.trial} and ${BOOT_CONFIG.committed}`);
    await this.options.reboot('normal');
  }

  async rebootOutcome(): Promise<RebootOutcome> {
    const attempt = this.requireAttempt();
    const { trybootRequestedIn } = attempt;
    // Not asked for yet (a crash or power cut came first), or asked for in this very boot (the agent alone restarted).
    if (trybootRequestedIn === null || trybootRequestedIn === this.bootId()) return { rebooted: false };
    const running = this.runningSlot();
    if (running === attempt.slot) return { rebooted: true, runsNew: true };
    const how =
      (attempt.trial ?? DEFAULT_TRIAL_METHOD) === 'firmware-tryboot'
        ? 'after the tryboot reboot'
        : 'in its trial boot';
    return {
      rebooted: true,
      runsNew: false,
      reason: `slot ${attempt.slot} did not come up ${how}; slot ${running} runs again`,
    };
  }

  async healthCheck(
    _manifest: ArtifactManifest,
    signal: AbortSignal,
  ): Promise<{ healthy: true } | { healthy: false; reason: string }> {
    const attempt = this.requireAttempt();
    const running = this.runningSlot();
    if (running !== attempt.slot) {
      return {
        healthy: false,
        reason: `slot ${attempt.slot} stopped before it was committed; the device restarted on slot ${running}`,
      };
    }
    const timeoutSeconds = this.options.healthTimeoutSeconds;
    const deadline = Date.now() + timeoutSeconds * 1000;
    while (!this.options.connected()) {
      if (Date.now() >= deadline || signal.aborted) {
        return {
          healthy: false,
          reason: `the agent on slot ${attempt.slot} did not connect to the server within ${timeoutSeconds} s`,
        };
      }
      await new Promise((resolve) => setTimeout(resolve, CONNECTED_POLL_MS));
    }
    return { healthy: true };
  }

  async commit(): Promise<void> {
    const attempt = this.requireAttempt();
    const running = this.runningSlot();
    if (running !== attempt.slot)
      throw new BoardfleetError(
        'commit-wrong-slot',
        `refusing to commit slot ${attempt.slot}: the device runs slot ${running}`,
      );
    // With the initramfs trial config.txt names the slot already: removing trial.txt commits it.
    this.pointConfigAt(attempt.slot);
    this.disarm();
    await flushFilesystems();
    this.options.log?.(`slot ${attempt.slot} committed in ${BOOT_CONFIG.committed}`);
  }

  /**
   * Points config.txt back at the slot that ran before the update (it still does with tryboot,
   * unless a commit was cut short), then disarms the new slot; the old slot runs again after a
   * plain reboot. In that order: a power cut in between boots the old slot, whose initramfs
   * drops a trial.txt that names the other one.
   */
  async rollback(): Promise<{ needsReboot: boolean }> {
    const attempt = this.attempt();
    if (attempt) this.pointConfigAt(attempt.from);
    this.disarm();
    await flushFilesystems();
    if (!attempt) return { needsReboot: false };
    return { needsReboot: this.runningSlot() !== attempt.from };
  }

  /** The running slot is whatever the firmware booted: nothing to start. */
  async resume(): Promise<void> {}

  async stop(): Promise<void> {}

  private attempt(): Attempt | null {
    return readJson<Attempt>(this.attemptFile);
  }

  private requireAttempt(): Attempt {
    const attempt = this.attempt();
    if (!attempt)
      throw new BoardfleetError(
        'no-attempt',
        `${this.attemptFile} is missing: no linux-ab update was installed on this device`,
      );
    return attempt;
  }

  private bootId(): string {
    return readFileSync(this.options.bootIdFile, 'utf8').trim();
  }

  private slotDevices(): SlotDevices {
    const devices = readJson<Partial<SlotDevices>>(this.options.slotsFile);
    if (!devices || typeof devices.a !== 'string' || typeof devices.b !== 'string')
      throw new InstallRefusedError(
        'no-slot-devices',
        `${this.options.slotsFile} does not name the block devices of slots a and b`,
      );
    return devices as SlotDevices;
  }

  private readBootFile(path: string): string {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      throw new BoardfleetError(
        'no-boot-config',
        `cannot read ${path}: is the boot partition mounted at ${this.options.bootDir}? (${(error as Error).message})`,
      );
    }
  }

  private pointConfigAt(slot: Slot): void {
    const config = this.readBootFile(this.configFile);
    if (slotOfBootConfig(config) !== slot)
      writeFileAtomically(this.configFile, withBootSlot(config, slot), { syncDirectory: true });
  }

  /** Removes tryboot.txt and trial.txt, whichever method armed the slot. */
  private disarm(): void {
    const armed = [this.trybootFile, this.trialFile].filter((file) => existsSync(file));
    if (armed.length === 0) return;
    for (const file of armed) rmSync(file);
    fsyncDirectory(this.options.bootDir);
  }
}

/**
 * Linux's FAT driver keeps directory entries and the allocation table in its buffer cache even
 * after fsync of the file and its directory: a commit would then be lost to a power cut within
 * the next half minute. `sync` writes them out (busybox and coreutils both have it).
 */
async function flushFilesystems(): Promise<void> {
  await promisify(execFile)('sync');
}
