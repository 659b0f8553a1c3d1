import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  BOOT_CONFIG,
  parseTrialFile,
  type Slot,
  slotOfBootConfig,
  trialFileText,
  withBootSlot,
} from '../../../protocol/linux-ab-layout.ts';
import { bootTrialScript } from './init-scripts.ts';

/**
 * The initramfs trial run for real against a directory standing for the mounted boot FAT: under
 * busybox's own `sh` (Debian package busybox, the version busybox-static has; the test set-up
 * installs it), the shell the device runs it with, and under dash, which parses the same POSIX
 * shell and is what a Debian host runs scripts with.
 */
const SHELLS: Array<{ name: string; command: string[] }> = [
  { name: 'dash', command: ['dash'] },
  { name: 'busybox sh', command: ['busybox', 'sh'] },
];

const work = mkdtempSync(join(tmpdir(), 'boot-trial-'));
const script = join(work, 'boot-trial.sh');
writeFileSync(script, bootTrialScript());

const CONFIG = [
  '# Boardfleet: Raspberry Pi 4 Model B. The agent rewrites os_prefix= to commit a slot.',
  'arm_64bit=1',
  'kernel=vmlinuz',
  'initramfs initrd.img followkernel',
  'os_prefix=slot-b/',
  '',
].join('\n');

function fat(files: Record<string, string>): string {
  const dir = mkdtempSync(join(work, 'fat-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** Sources the script and runs `boardfleet_trial DIR SLOT` as /init does. */
function trial(shell: string[], dir: string, slot: Slot | '') {
  const [program, ...args] = shell as [string, ...string[]];
  const result = spawnSync(
    program,
    [...args, '-c', '. "$0" && boardfleet_trial "$1" "$2"', script, dir, slot],
    { encoding: 'utf8' },
  );
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const read = (dir: string, name: string): string | null =>
  existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : null;

describe.each(SHELLS)('initramfs trial under $name', ({ command }) => {
  it.each([
    {
      case: 'no trial.txt: an ordinary boot',
      trialText: null,
      booting: 'b' as const,
      status: 0,
      output: '',
      trialAfter: null,
      configSlot: 'b',
    },
    {
      case: 'the first boot of the slot on trial marks it booted',
      trialText: trialFileText('b', 'a'),
      booting: 'b' as const,
      status: 0,
      output: 'boardfleet: trial of slot b, first boot\n',
      trialAfter: 'slot=b\nfallback=a\nbooted=1\n',
      configSlot: 'b',
    },
    {
      case: 'a second boot without a commit: the trial failed, config.txt names the fallback, restart',
      trialText: 'slot=b\nfallback=a\nbooted=1\n',
      booting: 'b' as const,
      status: 2,
      output: 'boardfleet: trial of slot b failed, back to slot a\n',
      trialAfter: null,
      configSlot: 'a',
    },
    {
      case: 'arming cut short before config.txt named the new slot: the stale trial.txt goes',
      trialText: trialFileText('a', 'b'),
      booting: 'b' as const,
      status: 0,
      output: 'boardfleet: slot a is not on trial in this boot (slot b runs): removing trial.txt\n',
      trialAfter: null,
      configSlot: 'b',
    },
    {
      case: 'a trial.txt that names no fallback is removed, the boot goes on',
      trialText: 'slot=b\n',
      booting: 'b' as const,
      status: 0,
      output: 'boardfleet: trial.txt names no slot and fallback (slot=b fallback=): removing it\n',
      trialAfter: null,
      configSlot: 'b',
    },
  ])('$case', ({ trialText, booting, status, output, trialAfter, configSlot }) => {
    const dir = fat({
      [BOOT_CONFIG.committed]: CONFIG,
      ...(trialText === null ? {} : { [BOOT_CONFIG.trial]: trialText }),
    });

    expect(trial(command, dir, booting)).toEqual({ status, output });
    expect(read(dir, BOOT_CONFIG.trial)).toBe(trialAfter);
    expect(slotOfBootConfig(read(dir, BOOT_CONFIG.committed) ?? '')).toBe(configSlot);
    // Written through temporary files renamed into place: none is left behind.
    expect(readdirSync(dir).filter((name) => name.endsWith('.tmp'))).toEqual([]);
  });

  it('rewrites only os_prefix= of config.txt, as the agent does, keeping comments and other lines', () => {
    for (const config of [
      CONFIG,
      CONFIG.replace('os_prefix=slot-b/', '  os_prefix = slot-b/'),
      CONFIG.replace('os_prefix=slot-b/\n', 'dtoverlay=disable-bt'),
    ]) {
      const dir = fat({
        [BOOT_CONFIG.committed]: config,
        [BOOT_CONFIG.trial]: 'slot=b\nfallback=a\nbooted=1\n',
      });
      expect(trial(command, dir, 'b').status).toBe(2);
      expect(read(dir, BOOT_CONFIG.committed)).toBe(withBootSlot(config, 'a'));
    }
  });

  it('leaves a slot that hangs on its second boot: arm, boot (marked), boot again (back to the fallback)', () => {
    const dir = fat({ [BOOT_CONFIG.committed]: withBootSlot(CONFIG, 'a') });
    // The agent on slot a arms slot b: trial.txt first, then config.txt.
    writeFileSync(join(dir, BOOT_CONFIG.trial), trialFileText('b', 'a'));
    writeFileSync(join(dir, BOOT_CONFIG.committed), withBootSlot(CONFIG, 'b'));

    expect(trial(command, dir, 'b').status).toBe(0);
    expect(parseTrialFile(read(dir, BOOT_CONFIG.trial) ?? '')).toEqual({
      slot: 'b',
      fallback: 'a',
      booted: true,
    });
    // Slot b hangs; a watchdog or a person power-cycles it; the firmware boots config.txt's slot b again.
    expect(trial(command, dir, 'b').status).toBe(2);
    expect(read(dir, BOOT_CONFIG.committed)).toBe(withBootSlot(CONFIG, 'a'));
    // After /init's restart the firmware boots slot a, where nothing is on trial.
    expect(trial(command, dir, 'a')).toEqual({ status: 0, output: '' });
  });
});
