import { execFile } from 'node:child_process';
import { BoardfleetError } from '../../protocol/errors.ts';

/** `tryboot`: the firmware boots what tryboot.txt names, once; `normal`: what config.txt names. */
export type RebootMode = 'tryboot' | 'normal';

/**
 * The small static helper a Boardfleet image carries (the agent itself may not reboot):
 * `boardfleet-reboot tryboot` calls reboot(2) with RESTART2 and "0 tryboot"; `boardfleet-reboot`
 * with no argument reboots plainly. It syncs the filesystems first.
 */
export const REBOOT_HELPER = '/usr/sbin/boardfleet-reboot';

/**
 * Reboots the device through the image's helper. A reboot that happens never lets this resolve
 * (the agent goes down with the device); it resolves only if the helper returns without
 * rebooting, and rejects, saying why, when the helper is missing or fails.
 */
export function rebootDevice(mode: RebootMode, helper = REBOOT_HELPER): Promise<void> {
  const args = mode === 'tryboot' ? ['tryboot'] : [];
  const command = [helper, ...args].join(' ');
  return new Promise((resolve, reject) => {
    execFile(helper, args, { timeout: 60_000 }, (error, _stdout, stderr) => {
      if (!error) return resolve();
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES')
        return reject(
          new BoardfleetError(
            'no-reboot-helper',
            `cannot run ${helper} (${code}): the linux-ab strategy reboots through the helper a Boardfleet image carries`,
          ),
        );
      const how = error.signal ? `was killed by ${error.signal}` : `exited with status ${String(code)}`;
      reject(
        new BoardfleetError(
          'reboot-failed',
          `${command} ${how}${stderr.trim() ? `: ${stderr.trim()}` : ''}`,
          { cause: error },
        ),
      );
    });
  });
}
