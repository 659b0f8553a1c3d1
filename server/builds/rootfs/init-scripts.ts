import { readFileSync } from 'node:fs';
import { BoardfleetError } from '../../../protocol/errors.ts';

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
    CONSOLE_DEVICE: options.consoleDevice,
    AGENT: options.agent ? 'yes' : 'no',
    DEBUG_SHELL: options.debugShell ? 'yes' : 'no',
    APP_RELEASE: options.appRelease ?? '',
  });
}

/** /init of the initramfs. */
export function initramfsInitScript(options: { kernelVersion: string; rootWaitSeconds: number }): string {
  return renderScript(template('initramfs-init.sh'), {
    KERNEL_VERSION: options.kernelVersion,
    ROOT_WAIT_SECONDS: String(options.rootWaitSeconds),
  });
}

/** The script busybox udhcpc runs on lease changes. */
export function udhcpcScript(): string {
  return template('udhcpc-default.script');
}
