import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import { bootTrialScript } from '../../builder/linux-image/rootfs/init-scripts.ts';
import type { RebootMode } from '../../device-agent/lib/device-reboot.ts';
import { type LinuxAbOptions, LinuxAbStrategy } from '../../device-agent/update/linux-ab.strategy.ts';
import { sha256 } from '../../lib/hash.ts';
import {
  BOOT_CONFIG,
  firmwareSlotChoice,
  type ImageInfo,
  PAYLOAD,
  type PayloadManifest,
  SLOT_FILES,
  type Slot,
  type SlotDevices,
  slotDirectory,
  slotFromCmdline,
  type TrialMethod,
} from '../../protocol/linux-ab-layout.ts';

/**
 * Test fixtures for the agent's `linux-ab` strategy: update payloads laid out as the image
 * builder lays them out, and a simulated Raspberry Pi whose slot devices are files, whose boot FAT
 * is a directory, and whose "firmware" picks the slot by the documented tryboot rules and hands
 * that slot's cmdline.txt to the "kernel" (a file standing for /proc/cmdline).
 * With the `initramfs-trial` method each boot then runs the image's own initramfs trial script
 * (builder/linux-image/rootfs/scripts/boot-trial.sh) on that directory, under the host's dash: a
 * double for the busybox ash of the device.
 */

export const CMDLINE_TEMPLATE =
  'console=serial0,115200 root=@ROOT@ rootfstype=squashfs ro boardfleet.slot=@SLOT@';

export interface TestPayload {
  file: string;
  manifest: PayloadManifest;
  rootfs: Buffer;
  /** The boot files as they are in the payload (cmdline.txt is the template). */
  bootFiles: Record<string, Buffer>;
}

/**
 * Writes an update payload: payload.json, rootfs.squashfs, then boot/ (uncompressed POSIX tar).
 * The kernel's content names the version, so a simulated Pi can tell which version it boots.
 * `tamper` changes the files after payload.json was computed, or the entry order.
 */
export async function writeTestPayload(
  dir: string,
  options: {
    version: string;
    board?: string;
    rootfsBytes?: number;
    tamper?: (files: {
      manifest: PayloadManifest;
      rootfs: Buffer;
      bootFiles: Record<string, Buffer>;
      order: string[];
    }) => void;
  },
): Promise<TestPayload> {
  const staging = join(dir, `payload-${options.version}-${randomUUID().slice(0, 8)}`);
  const rootfs = randomBytes(options.rootfsBytes ?? 3 * 1024 * 1024 + 123);
  const bootFiles: Record<string, Buffer> = {
    [SLOT_FILES.kernel]: Buffer.from(`kernel ${options.version}\n`),
    [SLOT_FILES.initramfs]: Buffer.from(`initramfs ${options.version}\n`),
    [SLOT_FILES.cmdline]: Buffer.from(`${CMDLINE_TEMPLATE}\n`),
    'bcm2711-rpi-4-b.dtb': randomBytes(4000),
    'overlays/disable-bt.dtbo': randomBytes(900),
  };
  const manifest: PayloadManifest = {
    schemaVersion: 1,
    board: options.board ?? 'rpi-4b',
    version: options.version,
    rootfs: { sha256: sha256(rootfs), size: rootfs.length },
    bootFiles: Object.fromEntries(
      Object.entries(bootFiles).map(([name, bytes]) => [name, { sha256: sha256(bytes), size: bytes.length }]),
    ),
  };
  const order = [PAYLOAD.manifest, PAYLOAD.rootfs, ...Object.keys(bootFiles).map((name) => `boot/${name}`)];
  const files = { manifest, rootfs, bootFiles, order };
  options.tamper?.(files);
  const write = (path: string, bytes: Buffer | string) => {
    mkdirSync(dirname(join(staging, path)), { recursive: true });
    writeFileSync(join(staging, path), bytes);
  };
  write(PAYLOAD.manifest, JSON.stringify(files.manifest, null, 2));
  write(PAYLOAD.rootfs, files.rootfs);
  for (const [name, bytes] of Object.entries(files.bootFiles)) write(`boot/${name}`, bytes);
  const file = `${staging}.tar`;
  await tar.c({ file, cwd: staging, portable: true, noDirRecurse: true }, files.order);
  return { file, manifest, rootfs, bootFiles };
}

/** A Raspberry Pi with A/B slots, in a directory. It starts on slot a, with `factoryVersion` in it. */
export class SimulatedPi {
  readonly bootDir: string;
  readonly slotsFile: string;
  readonly imageInfoFile: string;
  readonly cmdlineFile: string;
  readonly bootIdFile: string;
  readonly dataDir: string;
  readonly devices: SlotDevices;
  /** Reboots the strategy asked for and the test has not performed yet. */
  readonly rebootRequests: RebootMode[] = [];
  /** Every reboot the strategy asked for. */
  readonly rebootLog: RebootMode[] = [];
  /** The slot of every boot, in order. */
  readonly boots: Slot[] = [];
  /** Versions whose slot never brings the agent up (a kernel panic, a hang). */
  readonly neverComesUp = new Set<string>();
  /** Versions whose agent comes up but never reaches the server. */
  readonly neverConnects = new Set<string>();
  /** What the initramfs trial printed, boot after boot. */
  readonly initramfsLog: string[] = [];
  private readonly trialScript: string;

  /**
   * `trial`: the image's trial method, written to its image.json; null writes none (an image
   * built before the field existed).
   */
  constructor(
    readonly root: string,
    factoryVersion = '1.0.0',
    readonly trial: TrialMethod | null = 'firmware-tryboot',
  ) {
    this.bootDir = join(root, 'boot-fat');
    this.slotsFile = join(root, 'slots.json');
    this.imageInfoFile = join(root, 'image.json');
    this.trialScript = join(root, 'boot-trial.sh');
    this.cmdlineFile = join(root, 'proc-cmdline');
    this.bootIdFile = join(root, 'boot-id');
    this.dataDir = join(root, 'data');
    this.devices = {
      boot: join(root, 'disk-p1'),
      a: join(root, 'disk-p2'),
      b: join(root, 'disk-p3'),
      data: join(root, 'disk-p4'),
    };
    mkdirSync(join(this.bootDir, slotDirectory('a')), { recursive: true });
    mkdirSync(this.dataDir, { recursive: true });
    writeFileSync(
      this.configPath,
      'arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\nos_prefix=slot-a/\n',
    );
    writeFileSync(join(this.bootDir, 'slot-a', SLOT_FILES.kernel), `kernel ${factoryVersion}\n`);
    writeFileSync(
      join(this.bootDir, 'slot-a', SLOT_FILES.cmdline),
      `${CMDLINE_TEMPLATE.replace('@ROOT@', this.devices.a).replace('@SLOT@', 'a')}\n`,
    );
    writeFileSync(this.devices.a, `rootfs ${factoryVersion}`);
    writeFileSync(this.devices.b, '');
    writeFileSync(this.slotsFile, JSON.stringify(this.devices));
    const image: ImageInfo = {
      schemaVersion: 1,
      name: 'pi-minimal',
      version: factoryVersion,
      board: 'rpi-4b',
    };
    writeFileSync(this.imageInfoFile, JSON.stringify(trial ? { ...image, abTrial: trial } : image));
    writeFileSync(this.trialScript, bootTrialScript());
    this.boot(false);
  }

  get trialPath(): string {
    return join(this.bootDir, BOOT_CONFIG.trial);
  }

  get configPath(): string {
    return join(this.bootDir, BOOT_CONFIG.committed);
  }

  get trybootPath(): string {
    return join(this.bootDir, BOOT_CONFIG.tryboot);
  }

  /** The slot the running "kernel" was booted from. */
  get runningSlot(): Slot {
    return slotFromCmdline(readFileSync(this.cmdlineFile, 'utf8')) as Slot;
  }

  /** The version whose kernel the running slot booted. */
  get runningVersion(): string {
    return this.versionIn(this.runningSlot);
  }

  versionIn(slot: Slot): string {
    return readFileSync(join(this.bootDir, slotDirectory(slot), SLOT_FILES.kernel), 'utf8')
      .replace(/^kernel /, '')
      .trim();
  }

  /** The reboot function the strategy is given: records the request; the test performs it. */
  readonly reboot = async (mode: RebootMode): Promise<void> => {
    this.rebootRequests.push(mode);
    this.rebootLog.push(mode);
  };

  /**
   * Powers on (or reboots with or without the tryboot flag), as the firmware does: the slot by
   * the tryboot rules, that slot's cmdline.txt as /proc/cmdline, a new boot id; then, with the
   * initramfs trial, the trial script, which may restart the device. Says whether the agent
   * comes up on the slot that finally boots.
   */
  boot(trybootFlag: boolean): { slot: Slot; agentComesUp: boolean } {
    const slot = firmwareSlotChoice({
      config: readFileSync(this.configPath, 'utf8'),
      tryboot: existsSync(this.trybootPath) ? readFileSync(this.trybootPath, 'utf8') : null,
      trybootFlag,
    });
    writeFileSync(
      this.cmdlineFile,
      readFileSync(join(this.bootDir, slotDirectory(slot), SLOT_FILES.cmdline)),
    );
    writeFileSync(this.bootIdFile, `${randomUUID()}\n`);
    this.boots.push(slot);
    if (this.trial === 'initramfs-trial' && this.runInitramfsTrial(slot) === 'restart')
      return this.boot(false);
    return { slot, agentComesUp: !this.neverComesUp.has(this.versionIn(slot)) };
  }

  /** The initramfs's `boardfleet_trial` on the boot FAT, as /init runs it before the root is mounted. */
  private runInitramfsTrial(slot: Slot): 'go-on' | 'restart' {
    const result = spawnSync(
      'dash',
      ['-c', '. "$0" && boardfleet_trial "$1" "$2"', this.trialScript, this.bootDir, slot],
      { encoding: 'utf8' },
    );
    this.initramfsLog.push(...result.stdout.split('\n').filter(Boolean));
    if (result.status === 2) return 'restart';
    if (result.status !== 0)
      throw new Error(`the initramfs trial failed (${result.status}): ${result.stderr}`);
    return 'go-on';
  }

  /** Performs a requested reboot; a slot that never comes up is left by the next power cycle. */
  performReboot(): boolean {
    const mode = this.rebootRequests.shift();
    if (!mode) return false;
    this.powerCycle(mode === 'tryboot');
    return true;
  }

  /** Boots until the agent comes up: a slot that hangs is left by a power cycle (no tryboot flag). */
  powerCycle(trybootFlag = false): void {
    if (!this.boot(trybootFlag).agentComesUp && !this.boot(false).agentComesUp)
      throw new Error('the committed slot does not come up either');
  }

  /** The strategy as the agent on this Pi runs it. */
  strategy(overrides: Partial<LinuxAbOptions> = {}): LinuxAbStrategy {
    return new LinuxAbStrategy({
      bootDir: this.bootDir,
      slotsFile: this.slotsFile,
      imageInfoFile: this.imageInfoFile,
      cmdlineFile: this.cmdlineFile,
      bootIdFile: this.bootIdFile,
      stateDir: this.dataDir,
      board: 'rpi-4b',
      reboot: this.reboot,
      connected: () => !this.neverConnects.has(this.runningVersion),
      healthTimeoutSeconds: 1,
      ...overrides,
    });
  }
}
