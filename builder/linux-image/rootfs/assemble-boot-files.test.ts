import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { getLinuxBoard } from '../../../boards/board-catalogue.ts';
import { firmwareSlotChoice, slotOfBootConfig } from '../../../protocol/linux-ab-layout.ts';
import {
  assembleBootFiles,
  assembleSlotFiles,
  cmdlineTemplate,
  type SlotBootFiles,
} from './assemble-boot-files.ts';
import { type FakeInputs, writeFakeInputs } from './doubles/fake-packages.ts';

let work: string;
let inputs: FakeInputs;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'boot-files-'));
  inputs = await writeFakeInputs(join(work, 'inputs'));
});

const slotFiles = (board: string, dtb: string | null): SlotBootFiles => ({
  kernel: inputs.kernel,
  initramfs: inputs.busyboxStatic,
  dtbs: dtb ? [inputs.dtbs[dtb]!] : [],
  cmdline: cmdlineTemplate(getLinuxBoard(board), { kernelCmdline: ['quiet'] }),
});

describe('boot partition assembly', () => {
  it('puts the Pi 4 firmware, both boot configurations and a directory per slot on the FAT', async () => {
    const dir = join(work, 'rpi-4b');
    const board = getLinuxBoard('rpi-4b');
    const files = await assembleBootFiles({
      dir,
      board,
      firmwareRoot: inputs.firmwareRoot,
      slots: { a: slotFiles('rpi-4b', 'bcm2711-rpi-4-b'), b: slotFiles('rpi-4b', 'bcm2711-rpi-4-b') },
      committedSlot: 'a',
    });
    expect(files).toEqual([
      'boardfleet.json',
      'config.txt',
      'fixup4.dat',
      'slot-a/bcm2711-rpi-4-b.dtb',
      'slot-a/cmdline.txt',
      'slot-a/initrd.img',
      'slot-a/vmlinuz',
      'slot-b/bcm2711-rpi-4-b.dtb',
      'slot-b/cmdline.txt',
      'slot-b/initrd.img',
      'slot-b/vmlinuz',
      'start4.elf',
      'tryboot.txt',
    ]);
    const config = readFileSync(join(dir, 'config.txt'), 'utf8');
    expect(config.split('\n').slice(1)).toEqual([
      'arm_64bit=1',
      'enable_uart=1',
      'upstream_kernel=1',
      'device_tree=bcm2711-rpi-4-b.dtb',
      'kernel=vmlinuz',
      'initramfs initrd.img followkernel',
      'os_prefix=slot-a/',
      '',
    ]);
    expect(readFileSync(join(dir, 'tryboot.txt'), 'utf8')).toBe(config);
    expect(firmwareSlotChoice({ config, tryboot: config, trybootFlag: true })).toBe('a');
    expect(readFileSync(join(dir, 'slot-a/cmdline.txt'), 'utf8')).toBe(
      'console=ttyS1,115200 root=/dev/mmcblk0p2 ro boardfleet.root=/dev/mmcblk0p2 boardfleet.slot=a panic=5 net.ifnames=0 quiet\n',
    );
    expect(readFileSync(join(dir, 'slot-b/cmdline.txt'), 'utf8')).toContain(
      'root=/dev/mmcblk0p3 ro boardfleet.root=/dev/mmcblk0p3 boardfleet.slot=b',
    );
    expect(readFileSync(join(dir, 'slot-b/vmlinuz'))).toEqual(readFileSync(inputs.kernel));
    expect(readFileSync(join(dir, 'start4.elf'), 'utf8')).toBe('firmware start4.elf\n');
    expect(JSON.parse(readFileSync(join(dir, 'boardfleet.json'), 'utf8'))).toMatchObject({ board: 'rpi-4b' });
  });

  it.each([
    ['rpi-3b', 'bcm2837-rpi-3-b'],
    ['rpi-zero-2w', 'bcm2837-rpi-zero-2-w'],
  ])('gives the %s bootcode.bin and the Pi 3 firmware, never the Pi 4 files', async (id, dtb) => {
    const files = await assembleBootFiles({
      dir: join(work, id),
      board: getLinuxBoard(id),
      firmwareRoot: inputs.firmwareRoot,
      slots: { a: slotFiles(id, dtb) },
      committedSlot: 'a',
      agentConfig: { server: 'http://fleet.example:8080', provisioningToken: 'bfp_x' },
    });
    expect(files.filter((file) => !file.includes('/'))).toEqual([
      'boardfleet.json',
      'bootcode.bin',
      'config.txt',
      'fixup.dat',
      'start.elf',
      'tryboot.txt',
    ]);
    expect(files).toContain(`slot-a/${dtb}.dtb`);
    expect(JSON.parse(readFileSync(join(work, id, 'boardfleet.json'), 'utf8'))).toEqual({
      server: 'http://fleet.example:8080',
      provisioningToken: 'bfp_x',
    });
  });

  it('boots the qemu board without firmware, on its virtio partitions, committed to slot b', async () => {
    const dir = join(work, 'qemu');
    const files = await assembleBootFiles({
      dir,
      board: getLinuxBoard('qemu-virt-arm64'),
      firmwareRoot: null,
      slots: { a: slotFiles('qemu-virt-arm64', null), b: slotFiles('qemu-virt-arm64', null) },
      committedSlot: 'b',
    });
    expect(files).not.toContain('start.elf');
    const config = readFileSync(join(dir, 'config.txt'), 'utf8');
    expect(slotOfBootConfig(config)).toBe('b');
    expect(config).not.toContain('arm_64bit');
    expect(readFileSync(join(dir, 'slot-b/cmdline.txt'), 'utf8')).toBe(
      'console=ttyAMA0,115200 root=/dev/vda3 ro boardfleet.root=/dev/vda3 boardfleet.slot=b panic=5 net.ifnames=0 quiet\n',
    );
  });

  it('writes an update payload slot with cmdline.txt still a template', async () => {
    const dir = join(work, 'payload-boot');
    const files = await assembleSlotFiles({
      dir,
      board: getLinuxBoard('rpi-4b'),
      files: slotFiles('rpi-4b', 'bcm2711-rpi-4-b'),
      cmdline: slotFiles('rpi-4b', null).cmdline,
    });
    expect(files).toEqual(['bcm2711-rpi-4-b.dtb', 'cmdline.txt', 'initrd.img', 'vmlinuz']);
    expect(readFileSync(join(dir, 'cmdline.txt'), 'utf8')).toBe(
      'console=ttyS1,115200 root=@ROOT@ ro boardfleet.root=@ROOT@ boardfleet.slot=@SLOT@ panic=5 net.ifnames=0 quiet\n',
    );
  });

  it('names what is missing: the firmware package, a firmware file, a device tree, a committed slot', async () => {
    const board = getLinuxBoard('rpi-4b');
    await expect(
      assembleBootFiles({
        dir: join(work, 'e1'),
        board,
        firmwareRoot: null,
        slots: { a: slotFiles('rpi-4b', 'bcm2711-rpi-4-b') },
        committedSlot: 'a',
      }),
    ).rejects.toThrow(
      'rpi-4b boots through the Raspberry Pi firmware: pass the extracted raspi-firmware package',
    );
    await expect(
      assembleBootFiles({
        dir: join(work, 'e2'),
        board,
        firmwareRoot: join(work, 'inputs'),
        slots: { a: slotFiles('rpi-4b', 'bcm2711-rpi-4-b') },
        committedSlot: 'a',
      }),
    ).rejects.toThrow(
      `rpi-4b's firmware file start4.elf (from raspi-firmware) is missing: ${join(work, 'inputs/usr/lib/raspi-firmware/start4.elf')}`,
    );
    await expect(
      assembleBootFiles({
        dir: join(work, 'e3'),
        board,
        firmwareRoot: inputs.firmwareRoot,
        slots: { a: slotFiles('rpi-4b', 'bcm2837-rpi-3-b') },
        committedSlot: 'a',
      }),
    ).rejects.toThrow(
      'rpi-4b needs the device tree bcm2711-rpi-4-b.dtb (from linux-image-arm64), which was not passed',
    );
    await expect(
      assembleBootFiles({
        dir: join(work, 'e4'),
        board,
        firmwareRoot: inputs.firmwareRoot,
        slots: { a: slotFiles('rpi-4b', 'bcm2711-rpi-4-b') },
        committedSlot: 'b',
      }),
    ).rejects.toThrow('slot b is committed but has no boot files');
  });
});
