/**
 * The on-disk contract of a Boardfleet Linux image, shared by the image builder (which lays the
 * disk out), the init inside the image, the agent's `linux-ab` strategy (which updates it) and
 * the qemu test harness (which plays the Raspberry Pi firmware's part).
 *
 * Disk (MBR): 1 = boot FAT (firmware, config.txt, tryboot.txt, one directory per slot),
 * 2 = root slot A, 3 = root slot B (read-only squashfs each), 4 = data (ext4, writable).
 *
 * Slot selection follows the Pi firmware's own tryboot: `config.txt` names the committed slot
 * with `os_prefix=slot-a/`; `tryboot.txt` names the slot to try. A reboot with the argument
 * "0 tryboot" makes the firmware read `tryboot.txt` once; any other boot reads `config.txt`
 * again, so an untested slot that hangs or dies is left by the next power cycle. The agent
 * commits a slot by rewriting `config.txt` to point at it.
 *
 * Only the Raspberry Pi downstream kernel passes "0 tryboot" on to the firmware; Debian's kernel
 * ignores it. Boards that run Debian's kernel therefore use a boot-once trial kept by our own
 * initramfs instead (see {@link TrialMethod} and {@link BOOT_CONFIG}.trial).
 */

export const PARTITION = { boot: 1, rootA: 2, rootB: 3, data: 4 } as const;

export type Slot = 'a' | 'b';
export const SLOTS: readonly Slot[] = ['a', 'b'];

export const otherSlot = (slot: Slot): Slot => (slot === 'a' ? 'b' : 'a');

/** The FAT directory holding one slot's kernel, initramfs, cmdline.txt and device trees. */
export const slotDirectory = (slot: Slot): string => `slot-${slot}/`;

export const rootPartition = (slot: Slot): number => (slot === 'a' ? PARTITION.rootA : PARTITION.rootB);

/** Files inside a slot directory (and inside an update payload's `boot/`). */
export const SLOT_FILES = { kernel: 'vmlinuz', initramfs: 'initrd.img', cmdline: 'cmdline.txt' } as const;

/** Boot FAT files at its root. */
export const BOOT_CONFIG = {
  committed: 'config.txt',
  tryboot: 'tryboot.txt',
  /** The initramfs trial (see {@link TrialMethod}): `slot=`, `fallback=`, then `booted=1` once booted. */
  trial: 'trial.txt',
} as const;

/**
 * How a board boots a new slot once before it is committed.
 * - `firmware-tryboot`: tryboot.txt names the slot and a reboot with "0 tryboot" has the Pi
 *   firmware boot it once. Needs a kernel that passes the flag to the firmware (the Raspberry Pi
 *   kernel, or the qemu harness, which plays the firmware).
 * - `initramfs-trial`: config.txt already names the new slot and trial.txt marks it on trial; a
 *   plain reboot boots it. Our initramfs writes `booted=1` on the first boot and, finding it on a
 *   second boot (the trial hung or crashed before the agent committed), points config.txt back
 *   at the fallback slot and restarts. Works with any kernel (Debian's included).
 */
export type TrialMethod = 'firmware-tryboot' | 'initramfs-trial';

export const TRIAL_METHODS: readonly TrialMethod[] = ['firmware-tryboot', 'initramfs-trial'];

/** What an image that does not say otherwise uses: older images and the qemu harness. */
export const DEFAULT_TRIAL_METHOD: TrialMethod = 'firmware-tryboot';

/** trial.txt as the agent arms it: the slot on trial and the slot to go back to. */
export function trialFileText(slot: Slot, fallback: Slot): string {
  return `slot=${slot}\nfallback=${fallback}\n`;
}

/** The fields of a trial.txt; null when it does not name a slot and a different fallback. */
export function parseTrialFile(text: string): { slot: Slot; fallback: Slot; booted: boolean } | null {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*([a-z]+)\s*=\s*(\S*)\s*$/.exec(line);
    if (match) fields.set(match[1] as string, match[2] as string);
  }
  const slot = fields.get('slot');
  const fallback = fields.get('fallback');
  if (!isSlot(slot) || !isSlot(fallback) || slot === fallback) return null;
  return { slot, fallback, booted: fields.get('booted') === '1' };
}

const isSlot = (value: string | undefined): value is Slot => value === 'a' || value === 'b';

/** Where the running system mounts things, and where the agent's files live. */
export const MOUNTS = {
  boot: '/boot/firmware',
  data: '/data',
  /** The agent's configuration: on the boot FAT, so a user can edit it from any computer. */
  agentConfig: '/boot/firmware/boardfleet.json',
  agentDataDir: '/data/boardfleet',
  /** Written by the builder: the block devices of this board's partitions (see {@link SlotDevices}). */
  slotDevices: '/etc/boardfleet/slots.json',
  /** Written by the builder: what the image is (see {@link ImageInfo}). */
  imageInfo: '/etc/boardfleet/image.json',
} as const;

/** `/etc/boardfleet/image.json`: the image's recipe, version and board, and how it tries a slot. */
export interface ImageInfo {
  schemaVersion: 1;
  name: string;
  version: string;
  board: string;
  /** Absent in images built before it existed: {@link DEFAULT_TRIAL_METHOD}. */
  abTrial?: TrialMethod;
}

/** `/etc/boardfleet/slots.json`: partition block devices as the board's kernel names them. */
export interface SlotDevices {
  boot: string;
  a: string;
  b: string;
  data: string;
}

/**
 * Kernel command line markers. `cmdline.txt` in an update payload is a template with the
 * placeholders below; the agent (and the builder, for the first image) renders it per slot.
 */
export const CMDLINE = {
  slotParameter: 'boardfleet.slot',
  slotPlaceholder: '@SLOT@',
  rootPlaceholder: '@ROOT@',
} as const;

export function renderCmdline(template: string, slot: Slot, rootDevice: string): string {
  return template
    .replaceAll(CMDLINE.slotPlaceholder, slot)
    .replaceAll(CMDLINE.rootPlaceholder, rootDevice)
    .trim();
}

/** The slot a running kernel was booted from, read from /proc/cmdline; null when not a slot boot. */
export function slotFromCmdline(cmdline: string): Slot | null {
  const match = new RegExp(`(?:^|\\s)${CMDLINE.slotParameter.replace('.', '\\.')}=([ab])(?:\\s|$)`).exec(
    cmdline,
  );
  return match ? (match[1] as Slot) : null;
}

/**
 * An update payload (the `linux-image` artifact a rollout sends) is an uncompressed POSIX tar
 * with these entries, in this order: the manifest first, so a reader can check it before the
 * large root filesystem streams past.
 */
export const PAYLOAD = {
  manifest: 'payload.json',
  rootfs: 'rootfs.squashfs',
  bootDirectory: 'boot/',
} as const;

/** `payload.json` inside an update payload. */
export interface PayloadManifest {
  schemaVersion: 1;
  board: string;
  version: string;
  rootfs: { sha256: string; size: number };
  /** Files under `boot/`, each with its sha256; `cmdline.txt` is a template (see {@link CMDLINE}). */
  bootFiles: Record<string, { sha256: string; size: number }>;
}

/** The `os_prefix=` of a config.txt or tryboot.txt, as a slot; null when it names none. */
export function slotOfBootConfig(text: string): Slot | null {
  let slot: Slot | null = null;
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*os_prefix\s*=\s*slot-([ab])\/\s*$/.exec(line);
    if (match) slot = match[1] as Slot;
  }
  return slot;
}

/** Sets (or adds) the `os_prefix=` line of a config.txt, keeping every other line as it was. */
export function withBootSlot(text: string, slot: Slot): string {
  const line = `os_prefix=${slotDirectory(slot)}`;
  const lines = text.replace(/\n$/, '').split('\n');
  const index = lines.findIndex((candidate) => /^\s*os_prefix\s*=/.test(candidate));
  if (index >= 0) lines[index] = line;
  else lines.push(line);
  return `${lines.join('\n')}\n`;
}

/**
 * The Raspberry Pi firmware's choice, as its documentation describes tryboot: with the tryboot
 * flag set (a reboot with "0 tryboot", cleared by the firmware as it reads it) it boots what
 * `tryboot.txt` names, when that file exists; otherwise what `config.txt` names. The qemu test
 * harness uses this to play the firmware, which qemu cannot run.
 */
export function firmwareSlotChoice(files: {
  config: string;
  tryboot: string | null;
  trybootFlag: boolean;
}): Slot {
  const chosen =
    files.trybootFlag && files.tryboot !== null
      ? slotOfBootConfig(files.tryboot)
      : slotOfBootConfig(files.config);
  if (!chosen) throw new Error('the boot configuration names no slot (no os_prefix=slot-a/ or slot-b/)');
  return chosen;
}

/** What the kernel prints when asked to reboot into the tryboot slot; the qemu harness watches for it. */
export const TRYBOOT_REBOOT_ARGUMENT = '0 tryboot';
