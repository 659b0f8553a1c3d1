import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  boardsForUsbDevice,
  getAnyBoard,
  getBoard,
  getLinuxBoard,
  getUf2Board,
  getVmBoard,
  listAllBoards,
  listBoards,
  listLinuxBoards,
  listUf2Boards,
  listVmBoards,
  parseBoardFile,
} from './board-catalogue.ts';

const BOARDS_TXT = '/usr/share/arduino/hardware/arduino/avr/boards.txt';

/** The chip's facts as avr-libc's device header states them, evaluated by the preprocessor. */
function avrLibcFacts(mcu: string) {
  const names = [
    'SIGNATURE_0',
    'SIGNATURE_1',
    'SIGNATURE_2',
    'SPM_PAGESIZE',
    'FLASHEND',
    'RAMSTART',
    'RAMEND',
  ];
  let output: string;
  try {
    output = execFileSync('avr-gcc', [`-mmcu=${mcu}`, '-E', '-P', '-x', 'c', '-'], {
      input: `#include <avr/io.h>\n${names.map((name) => `fact ${name}`).join('\n')}\n`,
      encoding: 'utf8',
    });
  } catch (error) {
    throw new Error(`avr-gcc failed (install gcc-avr and avr-libc): ${(error as Error).message}`);
  }
  const values = output
    .split('\n')
    .filter((line) => line.startsWith('fact '))
    .map((line) => evaluateConstant(line.slice(5)));
  const [sig0, sig1, sig2, pageSize, flashEnd, ramStart, ramEnd] = values as number[];
  return {
    signature: [sig0, sig1, sig2],
    pageSize,
    flashSize: flashEnd! + 1,
    ramSize: ramEnd! - ramStart! + 1,
  };
}

/** Integer arithmetic as the headers write it: `(0x100 + (0xA00) - 1)`. */
function evaluateConstant(expression: string): number {
  if (!/^[\s\d()+\-x*a-fA-FUL]+$/.test(expression)) throw new Error(`not a constant: ${expression}`);
  return Number(new Function(`return ${expression.replace(/(0x[\da-fA-F]+|\d+)[UL]+/g, '$1')}`)());
}

/** One board's entry (with its cpu menu choice) from Debian's Arduino core. */
function arduinoCoreUploadLimit(entry: string, cpu?: string): number {
  const text = readFileSync(BOARDS_TXT, 'utf8');
  const key = cpu ? `${entry}.menu.cpu.${cpu}.upload.maximum_size=` : `${entry}.upload.maximum_size=`;
  const line = text.split('\n').find((candidate) => candidate.startsWith(key));
  if (!line) throw new Error(`${BOARDS_TXT} has no ${key} (install arduino-core-avr)`);
  return Number(line.slice(key.length));
}

const ARDUINO_CORE_ENTRIES: Record<string, [string, string?]> = {
  uno: ['uno'],
  nano: ['nano', 'atmega328'],
  'nano:old-bootloader': ['nano', 'atmega328old'],
  'pro-mini-5v': ['pro', '16MHzatmega328'],
  mega2560: ['mega', 'atmega2560'],
  leonardo: ['leonardo'],
};

describe('board catalogue', () => {
  it('holds the boards makers plug in, the Nano with both bootloaders', () => {
    expect(listBoards().map((board) => board.id)).toEqual([
      'leonardo',
      'mega2560',
      'nano',
      'nano:old-bootloader',
      'pro-mini-5v',
      'uno',
    ]);
    expect(getBoard('nano').upload.baudRate).toBe(115200);
    expect(getBoard('nano:old-bootloader').upload.baudRate).toBe(57600);
    expect(getBoard('nano:old-bootloader').bootloader).toBe('atmegaboot-atmega328');
  });

  // One contract every board file must meet, checked against the chip's own header and the
  // Arduino core's upload limits rather than against numbers repeated here.
  describe.each(listBoards().map((board) => [board.id, board] as const))('%s', (_id, board) => {
    it('states the signature, page, flash and RAM sizes avr-libc gives for its MCU', () => {
      const facts = avrLibcFacts(board.mcu);
      expect(board.signature).toEqual(facts.signature);
      expect(board.flash.pageSize).toBe(facts.pageSize);
      expect(board.flash.size).toBe(facts.flashSize);
      expect(board.ramSize).toBe(facts.ramSize);
    });

    it("leaves sketches the same room as the Arduino core's upload limit", () => {
      const [entry, cpu] = ARDUINO_CORE_ENTRIES[board.id]!;
      expect(board.applicationFlashSize).toBe(arduinoCoreUploadLimit(entry, cpu));
    });

    it('has a bootloader that is a whole number of pages, and USB ids for auto-detection', () => {
      expect(board.flash.bootloaderSize % board.flash.pageSize).toBe(0);
      expect(board.usb.length).toBeGreaterThan(0);
    });
  });

  it('names an unknown board and lists the known ones', () => {
    expect(() => getBoard('zx81')).toThrow(
      'Unknown board "zx81". Known boards: leonardo, mega2560, nano, nano:old-bootloader, pico, pro-mini-5v, ' +
        'qemu-virt-arm64, rpi-3b, rpi-4b, rpi-zero-2w, uno, vm-arm64, vm-x86_64 (see "boardfleet boards")',
    );
  });

  it('refuses a bad board file, naming the file and every bad field', () => {
    const directory = mkdtempSync(join(tmpdir(), 'boards-'));
    const path = join(directory, 'bad.yaml');
    writeFileSync(
      path,
      [
        'id: bad',
        'name: Bad board',
        'family: mcu',
        'mcu: atmega328p',
        'signature: [0x1E, 0x95, 0x100]',
        'clockHz: 16000000',
        'flash: { size: 32768, pageSize: 128, bootloaderSize: 512 }',
        'ramSize: 2048',
        'upload: { protocol: stk600, baudRate: 115200, reset: dtr-rts-pulse }',
        'bootloader: optiboot-atmega328',
        'usb: []',
        'ledPin: 13',
        'arduinoCore: { variant: standard, boardMacro: AVR_UNO }',
        'colour: blue',
      ].join('\n'),
    );
    let message = '';
    try {
      parseBoardFile(path);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(`${path} is not a valid board file:`);
    expect(message).toMatch(/signature\.2: .*255/);
    expect(message).toMatch(/upload\.protocol: .*stk500v1/);
    expect(message).toMatch(/colour/);

    writeFileSync(path, 'id: [unclosed');
    expect(() => parseBoardFile(path)).toThrow(`${path} is not valid YAML`);
  });

  it('refuses a board file whose id is not its file name', () => {
    const directory = mkdtempSync(join(tmpdir(), 'boards-'));
    const path = join(directory, 'uno2.yaml');
    writeFileSync(path, readFileSync(new URL('./uno.yaml', import.meta.url), 'utf8'));
    expect(() => parseBoardFile(path)).toThrow('id "uno" must match the file name ("uno2")');
  });

  it('tells a genuine board from a USB-serial chip many boards use', () => {
    expect(boardsForUsbDevice(0x2341, 0x0043)).toEqual({ kind: 'genuine', boards: ['uno'] });
    expect(boardsForUsbDevice(0x2a03, 0x8036)).toEqual({ kind: 'genuine', boards: ['leonardo'] });
    expect(boardsForUsbDevice(0x1a86, 0x7523)).toEqual({
      kind: 'clone',
      boards: ['mega2560', 'nano', 'nano:old-bootloader', 'pro-mini-5v', 'uno'],
    });
    expect(boardsForUsbDevice(0x046d, 0xc52b)).toBeUndefined();
  });

  it('keeps Linux boards apart from the microcontroller boards the Arduino toolkit asks for', () => {
    expect(listLinuxBoards().map((board) => board.id)).toEqual([
      'qemu-virt-arm64',
      'rpi-3b',
      'rpi-4b',
      'rpi-zero-2w',
    ]);
    expect(getAnyBoard('rpi-4b').family).toBe('linux');
    expect(getAnyBoard('uno').family).toBe('mcu');
    expect(() => getBoard('rpi-4b')).toThrow(
      '"rpi-4b" (Raspberry Pi 4 Model B) is a Linux board: it runs an image built from a recipe',
    );
    expect(() => getLinuxBoard('uno')).toThrow(
      '"uno" (Arduino Uno) is a microcontroller board: Linux images are built for qemu-virt-arm64, rpi-3b, rpi-4b, rpi-zero-2w',
    );
  });

  it('has virtual machines for unikernel images, each listing the host boards that run it', () => {
    expect(listVmBoards().map((board) => [board.id, board.architecture, board.hostBoards])).toEqual([
      ['vm-arm64', 'arm64', ['generic-arm64', 'rpi-4b', 'rpi-3b']],
      ['vm-x86_64', 'amd64', ['generic-x64']],
    ]);
    expect(getVmBoard('vm-x86_64').kernel.package).toBe('linux-image-cloud-amd64');
    expect(() => getVmBoard('rpi-4b')).toThrow(
      '"rpi-4b" (Raspberry Pi 4 Model B) is not a virtual machine: unikernel images are built for vm-arm64, vm-x86_64',
    );
    expect(() => getBoard('vm-x86_64')).toThrow('is a virtual machine: it runs an image built from a recipe');
    // Host boards are real boards of the catalogue or what an agent reports on a generic machine.
    for (const board of listVmBoards()) {
      for (const host of board.hostBoards) {
        if (!host.startsWith('generic-')) expect(getAnyBoard(host).family).toBe('linux');
      }
    }
  });

  describe.each(listLinuxBoards().map((board) => [board.id, board] as const))('%s', (_id, board) => {
    it('names its partitions as partitions 1 to 4 of one disk, as the A/B layout needs', () => {
      const { boot, a, b, data } = board.partitions;
      const disk = boot.slice(0, -1);
      expect([boot, a, b, data]).toEqual([`${disk}1`, `${disk}2`, `${disk}3`, `${disk}4`]);
    });

    it('loads the drivers for its root, data and boot filesystems from the initramfs', () => {
      for (const module of ['squashfs', 'crc32c_generic', 'ext4', 'vfat', 'nls_cp437']) {
        expect(board.kernel.modules).toContain(module);
      }
      // ext4 asks for crc32c through the crypto API when it mounts, where no modprobe can answer.
      expect(board.kernel.modules.indexOf('crc32c_generic')).toBeLessThan(
        board.kernel.modules.indexOf('ext4'),
      );
      expect(new Set(board.kernel.modules).size).toBe(board.kernel.modules.length);
    });
  });

  it.each([
    ['rpi-3b', ['bootcode.bin', 'start.elf', 'fixup.dat'], 'bcm2837-rpi-3-b.dtb', 'bcm2835'],
    ['rpi-zero-2w', ['bootcode.bin', 'start.elf', 'fixup.dat'], 'bcm2837-rpi-zero-2-w.dtb', 'bcm2835'],
    ['rpi-4b', ['start4.elf', 'fixup4.dat'], 'bcm2711-rpi-4-b.dtb', 'sdhci-iproc'],
  ])('%s boots with its own firmware files, device tree and SD driver', (id, files, dtb, sdDriver) => {
    const board = getLinuxBoard(id);
    expect(board.firmware).toEqual({ package: 'raspi-firmware', files });
    expect(board.kernel.deviceTrees).toEqual([`broadcom/${dtb}`]);
    expect(board.bootConfig).toEqual([
      'arm_64bit=1',
      'enable_uart=1',
      'upstream_kernel=1',
      `device_tree=${dtb}`,
    ]);
    expect(board.console).toEqual({ device: 'ttyS1', baudRate: 115200 });
    expect(board.kernel.modules).toContain(sdDriver);
    expect(board.kernel.modules).toContain('bcm2835_wdt');
  });

  it('boots the qemu test board without firmware, from virtio disks, on the PL011 console', () => {
    const board = getLinuxBoard('qemu-virt-arm64');
    expect(board.firmware).toBeNull();
    expect(board.boot.loader).toBe('qemu-direct');
    expect(board.console.device).toBe('ttyAMA0');
    expect(board.partitions.a).toBe('/dev/vda2');
    expect(board.kernel.modules).toEqual(expect.arrayContaining(['virtio_pci', 'virtio_blk', 'virtio_net']));
    expect(board.qemu).toEqual({ machine: 'virt', cpu: 'cortex-a72', memoryMiB: 1024 });
  });

  it('refuses a bad Linux board file, naming every bad field', () => {
    const directory = mkdtempSync(join(tmpdir(), 'boards-'));
    const path = join(directory, 'bad-pi.yaml');
    writeFileSync(
      path,
      [
        'id: bad-pi',
        'name: Bad Pi',
        'family: linux',
        'architecture: amd64',
        'kernel: { package: linux-image-arm64, modules: [squashfs], deviceTrees: [] }',
        'firmware: null',
        'bootConfig: [enable_uart=1, kernel=Image, device_tree=bcm2711-rpi-4-b.dtb]',
        'console: { device: serial0, baudRate: 115200 }',
        'partitions: { boot: /dev/mmcblk0p1, a: /dev/mmcblk0p3, b: /dev/mmcblk0p3, data: /dev/mmcblk0p4 }',
        'network: { interface: eth0 }',
        'boot: { loader: raspberry-pi-firmware, notes: none }',
        'abTrial: initramfs-trial',
        'gpu: vc4',
      ].join('\n'),
    );
    let message = '';
    try {
      parseBoardFile(path);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain(`${path} is not a valid board file:`);
    expect(message).toMatch(/architecture: .*arm64/);
    expect(message).toMatch(/console\.device: a tty name/);
    expect(message).toMatch(/gpu/);
    // The cross-field rules run only on an otherwise well-formed file: fix the shape, keep the rest.
    writeFileSync(
      path,
      readFileSync(path, 'utf8')
        .replace('amd64', 'arm64')
        .replace('serial0', 'ttyS1')
        .replace('gpu: vc4', ''),
    );
    message = parseError(path);
    expect(message).toContain('firmware: a board booted by the Raspberry Pi firmware must list it');
    expect(message).toContain("kernel.deviceTrees: the Raspberry Pi firmware needs the board's device tree");
    expect(message).toContain('bootConfig: an arm64 kernel needs arm_64bit=1');
    expect(message).toContain('bootConfig.1: "kernel=Image": the builder writes kernel=');
    expect(message).toContain(
      'bootConfig.2: device_tree=bcm2711-rpi-4-b.dtb is not one of kernel.deviceTrees',
    );
    expect(message).toContain('partitions.a: /dev/mmcblk0p3 must be partition 2 of the disk');
    expect(message).toContain(
      'kernel.modules: initramfs-trial needs vfat: the initramfs marks the trial on the boot FAT',
    );
  });

  it.each([
    ['rpi-3b', 'initramfs-trial'],
    ['rpi-4b', 'initramfs-trial'],
    ['rpi-zero-2w', 'initramfs-trial'],
    // Its harness plays the Pi firmware, tryboot flag included.
    ['qemu-virt-arm64', 'firmware-tryboot'],
  ])('%s tries a new slot with %s', (id, method) => {
    expect(getLinuxBoard(id).abTrial).toBe(method);
  });

  it('refuses an unknown trial method', () => {
    const directory = mkdtempSync(join(tmpdir(), 'boards-'));
    const path = join(directory, 'qemu-virt-arm64.yaml');
    writeFileSync(
      path,
      readFileSync(new URL('./qemu-virt-arm64.yaml', import.meta.url), 'utf8').replace(
        'abTrial: firmware-tryboot',
        'abTrial: uboot-bootcount',
      ),
    );
    expect(() => parseBoardFile(path)).toThrow(
      'abTrial: Invalid option: expected one of "firmware-tryboot"|"initramfs-trial"',
    );
  });

  it('says which families exist when a board file names another', () => {
    const directory = mkdtempSync(join(tmpdir(), 'boards-'));
    const path = join(directory, 'fpga.yaml');
    writeFileSync(path, 'id: fpga\nname: An FPGA\nfamily: fpga\n');
    expect(() => parseBoardFile(path)).toThrow(
      'family: must be "mcu" (a microcontroller board), "linux" (a board that runs a Linux image), "vm" (a virtual machine for unikernel images) or "uf2" (a microcontroller flashed through a UF2 drive)',
    );
  });

  describe('UF2 boards', () => {
    it('has the Raspberry Pi Pico: RP2040, 2 MB of flash at 0x10000000, its boot ROM drive and LED', () => {
      expect(listUf2Boards().map((board) => board.id)).toEqual(['pico']);
      const pico = getUf2Board('pico');
      expect(pico).toMatchObject({
        family: 'uf2',
        mcu: 'rp2040',
        crystalHz: 12_000_000,
        flash: {
          address: 0x1000_0000,
          size: 2 * 1024 * 1024,
          pageSize: 256,
          sectorSize: 4096,
          boot2Size: 256,
        },
        ramSize: 264 * 1024,
        ledPin: 25,
      });
      // Microsoft's uf2families.json: "Raspberry Pi RP2040".
      expect(pico.uf2).toEqual({
        familyId: 0xe48bff56,
        volumeLabel: 'RPI-RP2',
        infoFile: 'INFO_UF2.TXT',
        boardId: 'RPI-RP2',
      });
      // Raspberry Pi's usb-pid list: 0x0003 "RP2040 boot", 0x000A "Pico SDK CDC UART".
      expect(pico.usb.map((device) => [device.vendorId, device.productId, device.role])).toEqual([
        [0x2e8a, 0x0003, 'bootloader-drive'],
        [0x2e8a, 0x000a, 'firmware-serial'],
      ]);
    });

    it('speaks Firmata on UART0 (GP0/GP1) at the rate of the AVR Firmata recipe', () => {
      const recipe = readFileSync(
        new URL('../firmware-recipes/firmata/recipe.yaml', import.meta.url),
        'utf8',
      );
      const avrBaud = Number(/FIRMATA_BAUD: '(\d+)'/.exec(recipe)?.[1]);
      expect(getUf2Board('pico').serial).toEqual({ uart: 0, txPin: 0, rxPin: 1, baudRate: avrBaud });
    });

    it('keeps UF2 boards out of the AVR board list, saying why when one is asked for', () => {
      expect(listBoards().map((board) => board.id)).not.toContain('pico');
      expect(getAnyBoard('pico').family).toBe('uf2');
      expect(() => getBoard('pico')).toThrow(
        '"pico" (Raspberry Pi Pico) is an RP2040 board flashed through its UF2 drive, not an AVR board',
      );
      expect(() => getUf2Board('uno')).toThrow(
        '"uno" (Arduino Uno) is not flashed through a UF2 drive: UF2 boards are pico',
      );
      expect(listAllBoards().filter((board) => board.family === 'uf2')).toHaveLength(1);
    });

    it('refuses a bad UF2 board file, naming every bad field', () => {
      const directory = mkdtempSync(join(tmpdir(), 'boards-'));
      const path = join(directory, 'pico.yaml');
      const good = readFileSync(new URL('./pico.yaml', import.meta.url), 'utf8');
      writeFileSync(
        path,
        good
          .replace('mcu: rp2040', 'mcu: rp2350')
          .replace('volumeLabel: RPI-RP2', 'volumeLabel: rpi-rp2')
          .replace('role: bootloader-drive', 'role: drive'),
      );
      let message = '';
      try {
        parseBoardFile(path);
      } catch (error) {
        message = (error as Error).message;
      }
      expect(message).toContain(`${path} is not a valid board file:`);
      expect(message).toMatch(/mcu: .*rp2040/);
      expect(message).toMatch(/uf2\.volumeLabel: a FAT volume label/);
      expect(message).toMatch(/usb\.0\.role: .*bootloader-drive/);
      // The cross-field rules, on an otherwise well-formed file.
      writeFileSync(
        path,
        good
          .replace('address: 0x10000000', 'address: 0x10000100')
          .replace('size: 2097152', 'size: 2097000')
          .replace('boot2Size: 256', 'boot2Size: 512')
          .replace('rxPin: 1', 'rxPin: 0')
          .replace(/^ {2}- \{[^\n]*bootloader-drive[^\n]*\n/m, ''),
      );
      message = parseError(path);
      expect(message).toContain('flash.address: must be a multiple of flash.sectorSize');
      expect(message).toContain('flash.size: must be a whole number of sectors');
      expect(message).toContain('flash.boot2Size: the boot ROM reads the stage-2 boot as one page');
      expect(message).toContain("usb: must list the boot ROM's drive (role: bootloader-drive)");
      expect(message).toContain('serial.rxPin: must differ from txPin');
    });
  });
});

/** The message parseBoardFile throws for a bad board file ('' when it parses). */
function parseError(path: string): string {
  try {
    parseBoardFile(path);
    return '';
  } catch (error) {
    return (error as Error).message;
  }
}
