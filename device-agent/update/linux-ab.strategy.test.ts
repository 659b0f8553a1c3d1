import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { rebootDevice } from '../lib/device-reboot.ts';
import {
  CMDLINE_TEMPLATE,
  SimulatedPi,
  type TestPayload,
  writeTestPayload,
} from '../../test/support/simulated-pi.ts';
import { InstallRefusedError } from './update-strategy.ts';

const work = mkdtempSync(join(tmpdir(), 'boardfleet-linux-ab-'));
const newPi = () => new SimulatedPi(mkdtempSync(join(work, 'pi-')));
const signal = new AbortController().signal;

/** The signed artifact manifest of a payload (the manager has checked it before install runs). */
function artifactManifest(payload: TestPayload): ArtifactManifest {
  return {
    schemaVersion: 1,
    name: 'pi-minimal',
    version: payload.manifest.version,
    kind: 'linux-image',
    boards: ['rpi-4b'],
    sha256: '0'.repeat(64),
    size: 0,
    createdAt: 0,
  };
}

async function install(pi: SimulatedPi, payload: TestPayload, strategy = pi.strategy()) {
  return strategy.install(payload.file, artifactManifest(payload), signal);
}

/** Everything on the boot FAT and both slot devices, to show what an install changed. */
function snapshot(pi: SimulatedPi): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (dir: string, prefix: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name), `${prefix}${entry.name}/`);
      else files[`${prefix}${entry.name}`] = readFileSync(join(dir, entry.name)).toString('base64');
    }
  };
  walk(pi.bootDir, 'boot/');
  files['slot a device'] = readFileSync(pi.devices.a).toString('base64');
  files['slot b device'] = readFileSync(pi.devices.b).toString('base64');
  return files;
}

describe('linux-ab strategy (slot devices are files, the boot FAT a directory)', () => {
  it('writes the rootfs into the inactive slot, copies the boot files, arms tryboot.txt and leaves config.txt alone', async () => {
    const pi = newPi();
    const config = readFileSync(pi.configPath, 'utf8');
    const slotA = readFileSync(pi.devices.a);
    const payload = await writeTestPayload(work, { version: '2.0.0' });

    expect(await install(pi, payload)).toEqual({ needsReboot: true });

    expect(readFileSync(pi.devices.b).equals(payload.rootfs)).toBe(true);
    expect(readFileSync(pi.devices.a).equals(slotA)).toBe(true);
    const slotB = join(pi.bootDir, 'slot-b');
    for (const name of ['vmlinuz', 'initrd.img', 'bcm2711-rpi-4-b.dtb', 'overlays/disable-bt.dtbo'])
      expect(readFileSync(join(slotB, name)).equals(payload.bootFiles[name] as Buffer)).toBe(true);
    expect(readFileSync(join(slotB, 'cmdline.txt'), 'utf8')).toBe(
      `${CMDLINE_TEMPLATE.replace('@ROOT@', pi.devices.b).replace('@SLOT@', 'b')}\n`,
    );
    expect(readFileSync(pi.trybootPath, 'utf8')).toBe(
      config.replace('os_prefix=slot-a/', 'os_prefix=slot-b/'),
    );
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config);
    // No temporary file or staging directory is left on the boot FAT.
    expect(readdirSync(pi.bootDir).sort()).toEqual(['config.txt', 'slot-a', 'slot-b', 'tryboot.txt']);
    expect(readdirSync(slotB).sort()).toEqual([
      'bcm2711-rpi-4-b.dtb',
      'cmdline.txt',
      'initrd.img',
      'overlays',
      'vmlinuz',
    ]);
  });

  it('refuses a payload whose rootfs does not match payload.json before arming anything', async () => {
    const pi = newPi();
    const payload = await writeTestPayload(work, {
      version: '2.0.0',
      tamper: ({ rootfs }) => {
        rootfs[1000] = (rootfs[1000] ?? 0) ^ 0xff;
      },
    });
    const before = snapshot(pi);

    const failure = install(pi, payload);
    await expect(failure).rejects.toBeInstanceOf(InstallRefusedError);
    await expect(failure).rejects.toThrow(
      new RegExp(
        `^pi-minimal 2\\.0\\.0: rootfs\\.squashfs has sha256 [0-9a-f]{64}; payload\\.json says ${payload.manifest.rootfs.sha256} \\(a corrupt payload\\)$`,
      ),
    );
    const after = snapshot(pi);
    // Only the inactive slot's device was written; nothing on the boot FAT changed and nothing is armed.
    expect({ ...after, 'slot b device': '' }).toEqual({ ...before, 'slot b device': '' });
    expect(existsSync(pi.trybootPath)).toBe(false);
  });

  it.each([
    // /dev/null takes every write and reads back nothing; /dev/zero takes every write and reads back zeros.
    {
      device: '/dev/null',
      error: (size: number) => `slot b (/dev/null) reads back only 0 of the ${size} bytes written to it`,
    },
    {
      device: '/dev/zero',
      error: (size: number) =>
        `slot b (/dev/zero) reads back sha256 ${createHash('sha256').update(Buffer.alloc(size)).digest('hex')} after writing; payload.json says`,
    },
  ])(
    'refuses when the slot ($device) does not read back what was written to it',
    async ({ device, error }) => {
      const pi = newPi();
      writeFileSync(pi.slotsFile, JSON.stringify({ ...pi.devices, b: device }));
      const payload = await writeTestPayload(work, { version: '2.0.0' });

      await expect(install(pi, payload)).rejects.toThrow(error(payload.rootfs.length));
      expect(existsSync(pi.trybootPath)).toBe(false);
      expect(existsSync(join(pi.bootDir, 'slot-b'))).toBe(false);
    },
  );

  it.each([
    {
      problem: 'an image for another board',
      tamper: {},
      board: 'rpi-3b',
      error: 'pi-minimal 2.0.0 is an image for rpi-3b; this device is rpi-4b',
    },
    {
      problem: 'a boot file that differs from payload.json',
      tamper: { bootFile: 'vmlinuz' },
      error:
        /^pi-minimal 2\.0\.0: boot\/vmlinuz has 15 bytes and sha256 [0-9a-f]{64}; payload\.json says 13 bytes and [0-9a-f]{64}$/,
    },
    {
      problem: 'a boot file payload.json does not list',
      tamper: { unlisted: 'start4.elf' },
      error: 'pi-minimal 2.0.0: boot/start4.elf is not listed in payload.json',
    },
    {
      problem: 'a boot file payload.json lists but the payload lacks',
      tamper: { missing: 'initrd.img' },
      error: 'pi-minimal 2.0.0: payload.json lists boot/initrd.img, which the payload lacks',
    },
    {
      problem: 'a cmdline.txt without the @SLOT@ placeholder',
      tamper: { cmdline: 'console=serial0,115200 root=@ROOT@ ro' },
      error:
        'pi-minimal 2.0.0: boot/cmdline.txt renders to a command line without boardfleet.slot=b (use the @SLOT@ placeholder)',
    },
    {
      problem: 'the rootfs before payload.json',
      tamper: { rootfsFirst: true },
      error: 'pi-minimal 2.0.0: the payload starts with rootfs.squashfs, not payload.json',
    },
    {
      problem: 'a boot file outside boot/ in payload.json',
      tamper: { escaping: '../config.txt' },
      error:
        'pi-minimal 2.0.0: payload.json lists the boot file "../config.txt", which is not a plain path under boot/',
    },
  ] as Array<{
    problem: string;
    board?: string;
    tamper: {
      bootFile?: string;
      unlisted?: string;
      missing?: string;
      cmdline?: string;
      rootfsFirst?: boolean;
      escaping?: string;
    };
    error: string | RegExp;
  }>)('refuses $problem and arms nothing', async ({ board, tamper, error }) => {
    const pi = newPi();
    const payload = await writeTestPayload(work, {
      version: '2.0.0',
      ...(board ? { board } : {}),
      tamper: ({ manifest, bootFiles, order }) => {
        if (tamper.bootFile) bootFiles[tamper.bootFile] = Buffer.from('another kernel\n');
        if (tamper.unlisted) {
          bootFiles[tamper.unlisted] = Buffer.from('firmware');
          order.push(`boot/${tamper.unlisted}`);
        }
        if (tamper.missing) order.splice(order.indexOf(`boot/${tamper.missing}`), 1);
        if (tamper.cmdline) {
          bootFiles['cmdline.txt'] = Buffer.from(tamper.cmdline);
          manifest.bootFiles['cmdline.txt'] = {
            sha256: createHash('sha256').update(tamper.cmdline).digest('hex'),
            size: tamper.cmdline.length,
          };
        }
        if (tamper.rootfsFirst) order.unshift(order.splice(1, 1)[0] as string);
        if (tamper.escaping) manifest.bootFiles[tamper.escaping] = { sha256: '0'.repeat(64), size: 0 };
      },
    });
    const config = readFileSync(pi.configPath, 'utf8');

    const failure = install(pi, payload);
    await expect(failure).rejects.toBeInstanceOf(InstallRefusedError);
    await expect(failure).rejects.toThrow(error);
    expect(existsSync(pi.trybootPath)).toBe(false);
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config);
    expect(readdirSync(pi.bootDir).sort()).toEqual(['config.txt', 'slot-a']);
  });

  it('refuses to overwrite the committed slot while the other one runs on trial', async () => {
    const pi = newPi();
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }));
    pi.boot(true);
    expect(pi.runningSlot).toBe('b');

    await expect(install(pi, await writeTestPayload(work, { version: '3.0.0' }))).rejects.toThrow(
      'slot b runs on trial (slot a is committed): refusing to overwrite the committed slot; reboot to return to slot a first',
    );
  });

  it('reboots with the tryboot flag, and once the agent is connected on the new slot commits it in config.txt', async () => {
    const pi = newPi();
    const strategy = pi.strategy();
    const payload = await writeTestPayload(work, { version: '2.0.0' });
    await install(pi, payload, strategy);
    expect(await strategy.rebootOutcome()).toEqual({ rebooted: false });

    await strategy.reboot('new');
    expect(pi.rebootLog).toEqual(['tryboot']);
    // The agent restarting before the device went down is no reboot.
    expect(await strategy.rebootOutcome()).toEqual({ rebooted: false });
    pi.performReboot();
    expect(pi.boots).toEqual(['a', 'b']);

    const afterReboot = pi.strategy();
    expect(await afterReboot.rebootOutcome()).toEqual({ rebooted: true, runsNew: true });
    expect(await afterReboot.healthCheck(artifactManifest(payload), signal)).toEqual({ healthy: true });
    await afterReboot.commit();
    expect(readFileSync(pi.configPath, 'utf8')).toBe(
      'arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\nos_prefix=slot-b/\n',
    );
    expect(existsSync(pi.trybootPath)).toBe(false);
    // Committed: every later boot, tryboot or not, comes up on slot b.
    expect(pi.boot(false).slot).toBe('b');
    expect(pi.boot(true).slot).toBe('b');
  });

  it('when the firmware falls back to the old slot, says so, and the rollback only disarms tryboot.txt', async () => {
    const pi = newPi();
    pi.neverComesUp.add('2.0.0');
    const strategy = pi.strategy();
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
    const config = readFileSync(pi.configPath, 'utf8');
    await strategy.reboot('new');
    pi.performReboot();
    expect(pi.boots).toEqual(['a', 'b', 'a']);

    const afterReboot = pi.strategy();
    expect(await afterReboot.rebootOutcome()).toEqual({
      rebooted: true,
      runsNew: false,
      reason: 'slot b did not come up after the tryboot reboot; slot a runs again',
    });
    expect(await afterReboot.rollback()).toEqual({ needsReboot: false });
    expect(existsSync(pi.trybootPath)).toBe(false);
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config);
    expect(pi.rebootLog).toEqual(['tryboot']);
  });

  it('when health fails on the new slot, the rollback asks for a normal reboot and finishes on the old slot', async () => {
    const pi = newPi();
    pi.neverConnects.add('2.0.0');
    const strategy = pi.strategy();
    const payload = await writeTestPayload(work, { version: '2.0.0' });
    await install(pi, payload, strategy);
    await strategy.reboot('new');
    pi.performReboot();

    const onNewSlot = pi.strategy({ healthTimeoutSeconds: 0.5 });
    expect(await onNewSlot.rebootOutcome()).toEqual({ rebooted: true, runsNew: true });
    expect(await onNewSlot.healthCheck(artifactManifest(payload), signal)).toEqual({
      healthy: false,
      reason: 'the agent on slot b did not connect to the server within 0.5 s',
    });
    expect(await onNewSlot.rollback()).toEqual({ needsReboot: true });
    expect(existsSync(pi.trybootPath)).toBe(false);
    await onNewSlot.reboot('old');
    expect(pi.rebootLog).toEqual(['tryboot', 'normal']);
    pi.performReboot();
    expect(pi.runningSlot).toBe('a');

    expect(await pi.strategy().rollback()).toEqual({ needsReboot: false });
    expect(readFileSync(pi.configPath, 'utf8')).toMatch(/^os_prefix=slot-a\/$/m);
  });

  it('installs the next update into the other slot: a → b, then b → a', async () => {
    const pi = newPi();
    for (const version of ['2.0.0', '3.0.0']) {
      const strategy = pi.strategy();
      await install(pi, await writeTestPayload(work, { version }), strategy);
      await strategy.reboot('new');
      pi.performReboot();
      await pi.strategy().commit();
      expect(pi.runningVersion).toBe(version);
    }
    expect(pi.boots).toEqual(['a', 'b', 'a']);
  });
});

const newTrialPi = () => new SimulatedPi(mkdtempSync(join(work, 'pi-')), '1.0.0', 'initramfs-trial');
const config = (slot: 'a' | 'b') =>
  `arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\nos_prefix=slot-${slot}/\n`;

describe("linux-ab strategy with the initramfs trial (Debian kernel; the simulated Pi runs the image's trial script)", () => {
  it('installs without arming; the reboot writes trial.txt, points config.txt at the new slot and is a plain one', async () => {
    const pi = newTrialPi();
    const strategy = pi.strategy();
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
    expect(readdirSync(pi.bootDir).sort()).toEqual(['config.txt', 'slot-a', 'slot-b']);
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config('a'));

    await strategy.reboot('new');
    expect(pi.rebootLog).toEqual(['normal']);
    expect(readFileSync(pi.trialPath, 'utf8')).toBe('slot=b\nfallback=a\n');
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config('b'));
    expect(readdirSync(pi.bootDir).sort()).toEqual(['config.txt', 'slot-a', 'slot-b', 'trial.txt']);
    // Until the commit, slot b is on trial and slot a the committed one.
    expect(strategy.committedSlot()).toBe('a');
    expect(strategy.armedSlot()).toBe('b');
  });

  it('commits by removing trial.txt once the agent is connected on the new slot', async () => {
    const pi = newTrialPi();
    const strategy = pi.strategy();
    const payload = await writeTestPayload(work, { version: '2.0.0' });
    await install(pi, payload, strategy);
    await strategy.reboot('new');
    pi.performReboot();
    expect(pi.boots).toEqual(['a', 'b']);
    expect(pi.initramfsLog).toEqual(['boardfleet: trial of slot b, first boot']);
    expect(readFileSync(pi.trialPath, 'utf8')).toBe('slot=b\nfallback=a\nbooted=1\n');

    const onNewSlot = pi.strategy();
    expect(await onNewSlot.rebootOutcome()).toEqual({ rebooted: true, runsNew: true });
    expect(await onNewSlot.healthCheck(artifactManifest(payload), signal)).toEqual({ healthy: true });
    await onNewSlot.commit();
    expect(existsSync(pi.trialPath)).toBe(false);
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config('b'));
    expect(onNewSlot.committedSlot()).toBe('b');
    // Committed: a hang or power cycle now comes back to slot b.
    pi.powerCycle();
    expect(pi.boots).toEqual(['a', 'b', 'b']);
    expect(pi.initramfsLog).toEqual(['boardfleet: trial of slot b, first boot']);
  });

  it('when the new slot hangs, the next power cycle has the initramfs restore config.txt; the agent says the trial failed', async () => {
    const pi = newTrialPi();
    pi.neverComesUp.add('2.0.0');
    const strategy = pi.strategy();
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
    await strategy.reboot('new');
    pi.performReboot();
    expect(pi.boots).toEqual(['a', 'b', 'b', 'a']);
    expect(pi.initramfsLog).toEqual([
      'boardfleet: trial of slot b, first boot',
      'boardfleet: trial of slot b failed, back to slot a',
    ]);

    const onOldSlot = pi.strategy();
    expect(await onOldSlot.rebootOutcome()).toEqual({
      rebooted: true,
      runsNew: false,
      reason: 'slot b did not come up in its trial boot; slot a runs again',
    });
    expect(await onOldSlot.rollback()).toEqual({ needsReboot: false });
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config('a'));
    expect(existsSync(pi.trialPath)).toBe(false);
    expect(pi.rebootLog).toEqual(['normal']);
  });

  it('when health fails on the new slot, the rollback points config.txt back, removes trial.txt and reboots plainly', async () => {
    const pi = newTrialPi();
    pi.neverConnects.add('2.0.0');
    const strategy = pi.strategy();
    const payload = await writeTestPayload(work, { version: '2.0.0' });
    await install(pi, payload, strategy);
    await strategy.reboot('new');
    pi.performReboot();

    const onNewSlot = pi.strategy({ healthTimeoutSeconds: 0.3 });
    expect(await onNewSlot.healthCheck(artifactManifest(payload), signal)).toEqual({
      healthy: false,
      reason: 'the agent on slot b did not connect to the server within 0.3 s',
    });
    expect(await onNewSlot.rollback()).toEqual({ needsReboot: true });
    expect(readFileSync(pi.configPath, 'utf8')).toBe(config('a'));
    expect(existsSync(pi.trialPath)).toBe(false);
    await onNewSlot.reboot('old');
    pi.performReboot();
    expect(pi.boots).toEqual(['a', 'b', 'a']);
    expect(pi.rebootLog).toEqual(['normal', 'normal']);
    expect(await pi.strategy().rollback()).toEqual({ needsReboot: false });
  });

  it('refuses to overwrite the committed slot while the other one runs on trial', async () => {
    const pi = newTrialPi();
    const strategy = pi.strategy();
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
    await strategy.reboot('new');
    pi.performReboot();

    await expect(install(pi, await writeTestPayload(work, { version: '3.0.0' }))).rejects.toThrow(
      'slot b runs on trial (slot a is committed): refusing to overwrite the committed slot; reboot to return to slot a first',
    );
  });

  it.each([
    {
      cut: 'after the reboot was recorded, before trial.txt',
      undo: (pi: SimulatedPi) => {
        rmSync(pi.trialPath);
        writeFileSync(pi.configPath, config('a'));
      },
      boots: ['a', 'a'],
      initramfs: [],
      trialLeft: null,
      outcome: {
        rebooted: true,
        runsNew: false,
        reason: 'slot b did not come up in its trial boot; slot a runs again',
      },
    },
    {
      cut: 'after trial.txt, before config.txt',
      undo: (pi: SimulatedPi) => writeFileSync(pi.configPath, config('a')),
      boots: ['a', 'a'],
      initramfs: ['boardfleet: slot b is not on trial in this boot (slot a runs): removing trial.txt'],
      trialLeft: null,
      outcome: {
        rebooted: true,
        runsNew: false,
        reason: 'slot b did not come up in its trial boot; slot a runs again',
      },
    },
    {
      cut: 'after config.txt, before the reboot',
      undo: () => {},
      boots: ['a', 'b'],
      initramfs: ['boardfleet: trial of slot b, first boot'],
      trialLeft: 'slot=b\nfallback=a\nbooted=1\n',
      outcome: { rebooted: true, runsNew: true },
    },
  ])(
    'a power cut while arming ($cut) boots a slot that is committed or on trial',
    async ({ undo, boots, initramfs, trialLeft, outcome }) => {
      const pi = newTrialPi();
      const strategy = pi.strategy();
      await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
      await strategy.reboot('new');
      // The files as they were at the cut; the reboot asked for never happened, the power came back.
      pi.rebootRequests.length = 0;
      undo(pi);
      pi.powerCycle();

      expect(pi.boots).toEqual(boots);
      expect(pi.initramfsLog).toEqual(initramfs);
      expect(await pi.strategy().rebootOutcome()).toEqual(outcome);
      expect(existsSync(pi.trialPath) ? readFileSync(pi.trialPath, 'utf8') : null).toBe(trialLeft);
    },
  );

  it('installs the next update into the other slot: a → b, then b → a', async () => {
    const pi = newTrialPi();
    for (const version of ['2.0.0', '3.0.0']) {
      const strategy = pi.strategy();
      await install(pi, await writeTestPayload(work, { version }), strategy);
      await strategy.reboot('new');
      pi.performReboot();
      await pi.strategy().commit();
      expect(pi.runningVersion).toBe(version);
    }
    expect(pi.boots).toEqual(['a', 'b', 'a']);
    expect(pi.rebootLog).toEqual(['normal', 'normal']);
  });
});

describe("linux-ab trial method (from the image's image.json)", () => {
  it('uses the firmware tryboot when image.json names no method (an older image)', async () => {
    const pi = new SimulatedPi(mkdtempSync(join(work, 'pi-')), '1.0.0', null);
    const strategy = pi.strategy();
    expect(strategy.trialMethod()).toBe('firmware-tryboot');
    await install(pi, await writeTestPayload(work, { version: '2.0.0' }), strategy);
    expect(existsSync(pi.trybootPath)).toBe(true);
    await strategy.reboot('new');
    expect(pi.rebootLog).toEqual(['tryboot']);
  });

  it('refuses to install when image.json names a method this agent does not know', async () => {
    const pi = newPi();
    writeFileSync(pi.imageInfoFile, JSON.stringify({ schemaVersion: 1, abTrial: 'uboot-bootcount' }));
    await expect(install(pi, await writeTestPayload(work, { version: '2.0.0' }))).rejects.toThrow(
      `${pi.imageInfoFile} names the trial method "uboot-bootcount"; this agent knows firmware-tryboot and initramfs-trial`,
    );
    expect(existsSync(pi.trybootPath)).toBe(false);
  });
});

describe('rebootDevice (the image helper boardfleet-reboot)', () => {
  it('runs the helper with "tryboot" for a tryboot reboot and with no argument for a normal one', async () => {
    const dir = mkdtempSync(join(work, 'helper-'));
    const helper = join(dir, 'boardfleet-reboot');
    writeFileSync(helper, `#!/bin/sh\necho "[$*]" >> ${join(dir, 'calls')}\n`);
    chmodSync(helper, 0o755);
    await rebootDevice('tryboot', helper);
    await rebootDevice('normal', helper);
    expect(readFileSync(join(dir, 'calls'), 'utf8')).toBe('[tryboot]\n[]\n');
  });

  it('says which helper is missing or how it failed', async () => {
    const dir = mkdtempSync(join(work, 'helper-'));
    await expect(rebootDevice('tryboot', join(dir, 'absent'))).rejects.toThrow(
      `cannot run ${join(dir, 'absent')} (ENOENT): the linux-ab strategy reboots through the helper a Boardfleet image carries`,
    );
    const failing = join(dir, 'failing');
    writeFileSync(failing, '#!/bin/sh\necho "reboot: Operation not permitted" >&2\nexit 1\n');
    chmodSync(failing, 0o755);
    await expect(rebootDevice('tryboot', failing)).rejects.toThrow(
      `${failing} tryboot exited with status 1: reboot: Operation not permitted`,
    );
  });
});
