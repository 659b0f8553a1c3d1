import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  bootTrialScript,
  initramfsInitScript,
  networkInterfaceScript,
  renderScript,
  rootfsInitScript,
  udhcpcScript,
} from './init-scripts.ts';

/** busybox is not on the build host; dash parses the same POSIX shell. */
function parses(script: string): void {
  const path = join(mkdtempSync(join(tmpdir(), 'script-')), 'script');
  writeFileSync(path, script);
  execFileSync('dash', ['-n', path]);
}

describe('init scripts', () => {
  it('renders the root init with the board devices and prints the console markers', () => {
    const script = rootfsInitScript({
      devices: { boot: '/dev/vda1', data: '/dev/vda4' },
      networkInterface: 'eth0',
      consoleDevice: 'ttyAMA0',
      agent: true,
      debugShell: false,
      appRelease: null,
    });
    expect(script).toContain('BOOT_DEVICE=/dev/vda1\nDATA_DEVICE=/dev/vda4\n');
    expect(script).toContain('APP_RELEASE=\n');
    expect(script).toContain('say "slot ${SLOT:-unknown} up"');
    expect(script).toContain('say "agent started"');
    expect(script).toContain(
      'node /opt/boardfleet/agent.mjs --config /boot/firmware/boardfleet.json --data-dir "$AGENT_DATA"',
    );
    expect(script).toContain('\n. /usr/lib/boardfleet/network-interface.sh\n');
    expect(script).not.toMatch(/@[A-Z_]+@/);
    parses(script);
    parses(networkInterfaceScript());
  });

  it('renders the initramfs init, which says why it failed and restarts', () => {
    const script = initramfsInitScript({
      kernelVersion: '6.1.0-28-arm64',
      rootWaitSeconds: 10,
      abTrial: 'initramfs-trial',
      bootDevice: '/dev/mmcblk0p1',
    });
    expect(script).toContain(
      'KERNEL_VERSION=6.1.0-28-arm64\nROOT_WAIT_SECONDS=10\nAB_TRIAL=initramfs-trial\nBOOT_DEVICE=/dev/mmcblk0p1\n',
    );
    expect(script).toContain('echo "boardfleet: initramfs failed: $*"');
    expect(script).toContain('reboot -f');
    parses(script);
    parses(udhcpcScript());
    parses(bootTrialScript());
  });

  it('refuses values the shell would interpret, and placeholders left unfilled', () => {
    expect(() => renderScript('A=@A@\n', { A: '/dev/sda1; rm -rf /' })).toThrow(
      'has characters the shell would read',
    );
    expect(() => renderScript('A=@A@ B=@B@\n', { A: 'x' })).toThrow("the script's @B@ was not filled in");
    expect(() => renderScript('A=1\n', { A: 'x' })).toThrow('the script has no @A@');
  });
});
