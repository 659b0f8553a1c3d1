import { readFileSync } from 'node:fs';
import { BoardfleetError } from '../../../protocol/errors.ts';
import type { TrialMethod } from '../../../protocol/linux-ab-layout.ts';

const SCRIPTS = new URL('./scripts/', import.meta.url);

const template = (name: string): string => readFileSync(new URL(name, SCRIPTS), 'utf8');

/**
 * Fills the `@NAME@` placeholders of a script. Values go in unquoted, so only characters that
 * mean nothing to the shell are allowed; every placeholder must be given, and used.
 */
export function renderScript(text: string, values: Record<string, string>): string {
  for (const [name, value] of Object.entries(values)) {
    if (!/^[A-Za-z0-9/._:+-]*$/.test(value)) {
      throw new BoardfleetError(
        'script-bad-value',
        `"${value}" for @${name}@ has characters the shell would read`,
      );
    }
    if (!text.includes(`@${name}@`)) throw new Error(`the script has no @${name}@`);
    text = text.replaceAll(`@${name}@`, value);
  }
  const left = /@[A-Z_]+@/.exec(text);
  if (left) throw new Error(`the script's ${left[0]} was not filled in`);
  return text;
}

export interface RootfsInitOptions {
  devices: { boot: string; data: string };
  networkInterface: string;
  consoleDevice: string;
  agent: boolean;
  debugShell: boolean;
  /** `name-version` of the app installed on the first boot, or null. */
  appRelease: string | null;
}

/** /sbin/init of the root filesystem. */
export function rootfsInitScript(options: RootfsInitOptions): string {
  return renderScript(template('rootfs-init.sh'), {
    BOOT_DEVICE: options.devices.boot,
    DATA_DEVICE: options.devices.data,
    NET_INTERFACE: options.networkInterface,
    NETWORK_SCRIPT: `/${NETWORK_SCRIPT_PATH}`,
    CONSOLE_DEVICE: options.consoleDevice,
    AGENT: options.agent ? 'yes' : 'no',
    DEBUG_SHELL: options.debugShell ? 'yes' : 'no',
    APP_RELEASE: options.appRelease ?? '',
  });
}

export interface InitramfsInitOptions {
  kernelVersion: string;
  rootWaitSeconds: number;
  /** The board's way of trying a slot; with `initramfs-trial` /init keeps the trial on the boot FAT. */
  abTrial: TrialMethod;
  /** The boot FAT's block device, which /init mounts for the trial. */
  bootDevice: string;
}

/** /init of the initramfs. */
export function initramfsInitScript(options: InitramfsInitOptions): string {
  return renderScript(template('initramfs-init.sh'), {
    KERNEL_VERSION: options.kernelVersion,
    ROOT_WAIT_SECONDS: String(options.rootWaitSeconds),
    AB_TRIAL: options.abTrial,
    BOOT_DEVICE: options.bootDevice,
  });
}

/** Where the initramfs keeps the trial functions /init sources ({@link bootTrialScript}). */
export const BOOT_TRIAL_SCRIPT_PATH = 'lib/boardfleet/boot-trial.sh';

/**
 * The initramfs trial (`boardfleet_trial DIR SLOT`), a POSIX sh file /init sources on
 * initramfs-trial boards. Kept apart from /init so that tests can run it against a directory.
 */
export function bootTrialScript(): string {
  return template('boot-trial.sh');
}

/** Where the root keeps the interface choice /sbin/init sources ({@link networkInterfaceScript}). */
export const NETWORK_SCRIPT_PATH = 'usr/lib/boardfleet/network-interface.sh';

/**
 * `boardfleet_network_interface CONFIGURED WAIT_SECONDS [NET_DIR]`, a POSIX sh file /sbin/init
 * sources: the board's interface if present, else the first with a carrier. Kept apart from
 * /sbin/init so that tests can run it against a directory standing for /sys/class/net.
 */
export function networkInterfaceScript(): string {
  return template('network-interface.sh');
}

/** The script busybox udhcpc runs on lease changes. */
export function udhcpcScript(): string {
  return template('udhcpc-default.script');
}
