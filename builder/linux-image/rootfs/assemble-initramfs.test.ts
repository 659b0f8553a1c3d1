import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { getLinuxBoard } from '../../../boards/board-catalogue.ts';
import { assembleInitramfs } from './assemble-initramfs.ts';
import { INITRAMFS_APPLETS } from './busybox.ts';
import { BOOT_TRIAL_SCRIPT_PATH, bootTrialScript } from './init-scripts.ts';
import { fakeBusybox } from './doubles/fake-elf.ts';
import { type FakeInputs, writeFakeInputs } from './doubles/fake-packages.ts';

let work: string;
let inputs: FakeInputs;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'initramfs-'));
  inputs = await writeFakeInputs(join(work, 'inputs'));
});

describe('initramfs assembly', () => {
  it('holds busybox, the modules in load order and an /init that finds the slot root', async () => {
    const dir = join(work, 'tree');
    const files = ['kernel/fs/squashfs/squashfs.ko', 'kernel/fs/jbd2/jbd2.ko', 'kernel/fs/ext4/ext4.ko'];
    const result = await assembleInitramfs({
      dir,
      board: getLinuxBoard('rpi-4b'),
      busyboxStatic: inputs.busyboxStatic,
      modulesRoot: inputs.modulesRoot,
      moduleFiles: files,
    });
    expect(result.kernelVersion).toBe('6.1.0-99-arm64');
    const modules = join(dir, 'lib/modules/6.1.0-99-arm64');
    expect(readFileSync(join(modules, 'load-order'), 'utf8')).toBe(`${files.join('\n')}\n`);
    for (const file of files) {
      expect(readFileSync(join(modules, file))).toEqual(readFileSync(join(inputs.modulesRoot, file)));
      expect(lstatSync(join(modules, file)).mode & 0o777).toBe(0o644);
    }
    expect(lstatSync(join(dir, 'init')).mode & 0o777).toBe(0o755);
    const init = readFileSync(join(dir, 'init'), 'utf8');
    expect(init).toContain('KERNEL_VERSION=6.1.0-99-arm64\n');
    expect(init).toContain('ROOT_WAIT_SECONDS=30\n');
    expect(init).toContain('exec switch_root /newroot /sbin/init');
    expect(() => execFileSync('dash', ['-n', join(dir, 'init')])).not.toThrow();
    for (const applet of INITRAMFS_APPLETS) expect(readlinkSync(join(dir, 'bin', applet))).toBe('busybox');
    for (const directory of ['boot', 'dev', 'proc', 'sys', 'newroot'])
      expect(lstatSync(join(dir, directory)).isDirectory()).toBe(true);
    // rpi-4b runs Debian's kernel: /init keeps the slot's trial on the boot FAT.
    expect(init).toContain('AB_TRIAL=initramfs-trial\nBOOT_DEVICE=/dev/mmcblk0p1\n');
    expect(init).toContain(`. /${BOOT_TRIAL_SCRIPT_PATH}\n`);
    expect(readFileSync(join(dir, BOOT_TRIAL_SCRIPT_PATH), 'utf8')).toBe(bootTrialScript());
    expect(lstatSync(join(dir, BOOT_TRIAL_SCRIPT_PATH)).mode & 0o777).toBe(0o644);
  });

  it('leaves the trial out for a board whose harness plays the firmware (firmware-tryboot)', async () => {
    const dir = join(work, 'qemu-tree');
    await assembleInitramfs({
      dir,
      board: getLinuxBoard('qemu-virt-arm64'),
      busyboxStatic: inputs.busyboxStatic,
      modulesRoot: inputs.modulesRoot,
      moduleFiles: [],
    });
    expect(readFileSync(join(dir, 'init'), 'utf8')).toContain(
      'AB_TRIAL=firmware-tryboot\nBOOT_DEVICE=/dev/vda1\n',
    );
    expect(existsSync(join(dir, BOOT_TRIAL_SCRIPT_PATH))).toBe(false);
  });

  it('refuses a busybox that lacks an applet /init runs, or is not static', async () => {
    const partial = join(work, 'partial-busybox');
    writeFileSync(partial, fakeBusybox(['sh', 'mount']));
    await expect(
      assembleInitramfs({
        dir: join(work, 'partial'),
        board: getLinuxBoard('qemu-virt-arm64'),
        busyboxStatic: partial,
        modulesRoot: inputs.modulesRoot,
        moduleFiles: [],
      }),
    ).rejects.toThrow(
      `${partial} lacks the applets cat, dmesg, insmod, ls, mv, reboot, rm, sleep, switch_root, sync, umount, usleep`,
    );
    await expect(
      assembleInitramfs({
        dir: join(work, 'dynamic'),
        board: getLinuxBoard('qemu-virt-arm64'),
        busyboxStatic: inputs.nodeBinary,
        modulesRoot: inputs.modulesRoot,
        moduleFiles: [],
      }),
    ).rejects.toThrow('is dynamically linked (/lib/ld-linux-aarch64.so.1)');
  });

  it('wants the modules directory of one kernel version', async () => {
    await expect(
      assembleInitramfs({
        dir: join(work, 'bad-root'),
        board: getLinuxBoard('qemu-virt-arm64'),
        busyboxStatic: inputs.busyboxStatic,
        modulesRoot: join(inputs.modulesRoot, 'kernel'),
        moduleFiles: [],
      }),
    ).rejects.toThrow("should be a kernel's lib/modules/<version>/ directory");
  });
});
