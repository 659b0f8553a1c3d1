import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { getLinuxBoard } from '../../boards/board-catalogue.ts';
import { readFatFile, readPartitionTable } from '../../builder/disk/inspect-disk.ts';
import { sha256 } from '../../lib/hash.ts';
import {
  BOOT_CONFIG,
  firmwareSlotChoice,
  PARTITION,
  rootPartition,
  type Slot,
  SLOT_FILES,
  slotDirectory,
  TRYBOOT_REBOOT_ARGUMENT,
} from '../../protocol/linux-ab-layout.ts';

const run = promisify(execFile);

/**
 * The emulated machines. `virt`: qemu's generic arm64 machine (virtio disk and network, PL011
 * console), for images built for qemu-virt-arm64. `raspi3b`: the emulated Raspberry Pi 3 for the
 * rpi-3b image file as it is: its SD host, the mini UART console (qemu's second serial: the PL011
 * serves Bluetooth) and dwc2 USB with qemu's usb-net adapter, which Linux names usb0.
 */
export type PiMachine = 'virt' | 'raspi3b';

/** qemu's SD card model takes only a power-of-two size: the smallest one that holds `bytes`. */
export function powerOfTwoAtLeast(bytes: number): number {
  let size = 1;
  while (size < bytes) size *= 2;
  return size;
}

/**
 * Boots a Boardfleet disk image under qemu-system-aarch64, playing the part of the Raspberry Pi
 * firmware, which qemu cannot run: before each boot it reads config.txt (or, after a reboot that
 * asked for tryboot, tryboot.txt) from the image's boot FAT, picks the slot the documented
 * tryboot rules pick (`firmwareSlotChoice`), and hands that slot's kernel, initramfs, cmdline.txt
 * (and on raspi3b its device tree) to qemu. The tryboot flag is what the kernel printed as it
 * restarted, and is cleared by the next boot, as the firmware clears it. The disk is the same
 * file across boots; for raspi3b it is padded once to a power-of-two size (the partitions stay).
 */
export class QemuPiFirmware {
  private child: ChildProcess | null = null;
  private console = '';
  private readonly scratch = mkdtempSync(join(tmpdir(), 'boardfleet-qemu-'));
  private trybootFlag = false;
  private readonly machine: PiMachine;
  /** Slot chosen at each boot, in order. */
  readonly bootedSlots: Slot[] = [];
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly diskImage: string,
    private readonly options: {
      machine?: PiMachine;
      /** virt only: raspi3b has the Pi 3's 1 GiB. */
      memoryMiB?: number;
      onConsole?: (text: string) => void;
    } = {},
  ) {
    this.machine = options.machine ?? 'virt';
    if (this.machine === 'raspi3b') {
      const size = statSync(diskImage).size;
      if (size !== powerOfTwoAtLeast(size)) truncateSync(diskImage, powerOfTwoAtLeast(size));
    }
  }

  get consoleText(): string {
    return this.console;
  }

  /** Writes a file into the boot FAT, as a user does on a PC before the first boot. */
  async writeBootFile(name: string, content: string): Promise<void> {
    const local = join(this.scratch, 'upload');
    writeFileSync(local, content);
    await run('mcopy', ['-o', '-i', `${this.diskImage}@@${await this.bootOffset()}`, local, `::${name}`]);
  }

  /** The sha256 of a file on the boot FAT (a slot's kernel, initramfs…). */
  async bootFileSha256(name: string): Promise<string> {
    return sha256(await readFatFile(this.diskImage, PARTITION.boot, name));
  }

  /** The sha256 of the first `length` bytes of a slot's root partition: what the agent wrote there. */
  async rootSlotSha256(slot: Slot, length: number): Promise<string> {
    const partition = (await readPartitionTable(this.diskImage)).partitions.find(
      (candidate) => candidate.number === rootPartition(slot),
    );
    if (!partition) throw new Error(`${this.diskImage} has no root partition for slot ${slot}`);
    if (length === 0) return sha256('');
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(this.diskImage, {
      start: partition.startBytes,
      end: partition.startBytes + length - 1,
    }))
      hash.update(chunk as Buffer);
    return hash.digest('hex');
  }

  async readBootFile(name: string): Promise<string | null> {
    try {
      return (await readFatFile(this.diskImage, PARTITION.boot, name)).toString('latin1');
    } catch {
      return null;
    }
  }

  /** Boots once; the returned promise settles when qemu has started. */
  async boot(): Promise<Slot> {
    const config = await this.readBootFile(BOOT_CONFIG.committed);
    if (config === null) throw new Error(`${this.diskImage} has no ${BOOT_CONFIG.committed} on its boot FAT`);
    const slot = firmwareSlotChoice({
      config,
      tryboot: await this.readBootFile(BOOT_CONFIG.tryboot),
      trybootFlag: this.trybootFlag,
    });
    this.trybootFlag = false;
    this.bootedSlots.push(slot);
    const local = (name: string) => join(this.scratch, name);
    const deviceTree = this.machine === 'raspi3b' ? raspi3bDeviceTree() : null;
    for (const name of [SLOT_FILES.kernel, SLOT_FILES.initramfs, ...(deviceTree ? [deviceTree] : [])]) {
      writeFileSync(
        local(name),
        await readFatFile(this.diskImage, PARTITION.boot, `${slotDirectory(slot)}${name}`),
      );
    }
    const cmdline = (await this.readBootFile(`${slotDirectory(slot)}${SLOT_FILES.cmdline}`))?.trim();
    if (!cmdline) throw new Error(`slot ${slot} has no ${SLOT_FILES.cmdline}`);
    const boot = ['-kernel', local(SLOT_FILES.kernel), '-initrd', local(SLOT_FILES.initramfs)];
    boot.push('-append', cmdline, ...(deviceTree ? ['-dtb', local(deviceTree)] : []));
    const child = spawn(
      'qemu-system-aarch64',
      [...['-accel', 'tcg', '-nographic', '-no-reboot'], ...boot, ...this.hardware()],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const collect = (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      this.console += text;
      this.options.onConsole?.(text);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => {
      child.once('error', (error) => {
        this.console += `\nqemu-system-aarch64 (Debian package qemu-system-arm) did not start: ${error.message}\n`;
      });
      // 'close', not 'exit': the console's last lines (the restart message) are read by then.
      child.once('close', () => {
        // What the kernel says as it restarts is the firmware's tryboot flag for the next boot.
        const tail = this.console.slice(-4096);
        this.trybootFlag = tail.includes(`Restarting system with command '${TRYBOOT_REBOOT_ARGUMENT}'`);
        this.child = null;
        resolve();
      });
    });
    return slot;
  }

  /** qemu's machine and devices: the disk, the console and the network. */
  private hardware(): string[] {
    if (this.machine === 'raspi3b') {
      return [
        ...['-M', 'raspi3b', '-drive', `file=${this.diskImage},if=sd,format=raw`],
        ...['-serial', 'null', '-serial', 'stdio', '-monitor', 'none'],
        ...['-usb', '-device', 'usb-net,netdev=net0', '-netdev', 'user,id=net0'],
      ];
    }
    const memory = String(this.options.memoryMiB ?? 1024);
    return [
      ...['-M', 'virt', '-cpu', 'cortex-a72', '-smp', '2', '-m', memory, '-nodefaults', '-serial', 'stdio'],
      ...['-drive', `file=${this.diskImage},if=none,format=raw,id=disk0`],
      ...['-device', 'virtio-blk-pci,drive=disk0'],
      ...['-netdev', 'user,id=net0', '-device', 'virtio-net-pci,netdev=net0'],
    ];
  }

  /** Waits for a console line; fails with the console tail if qemu exits or time runs out first. */
  async waitForConsole(pattern: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.console.slice(from));
      if (match) return match;
      if (!this.child)
        throw new Error(`qemu exited before ${pattern}; console tail:\n${this.console.slice(-3000)}`);
      if (Date.now() > deadline)
        throw new Error(`no ${pattern} within ${timeoutMs} ms; console tail:\n${this.console.slice(-3000)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Resolves when the guest has restarted or powered off (qemu exits with -no-reboot). */
  async waitForExit(timeoutMs: number): Promise<{ tryboot: boolean }> {
    const timer = new Promise<'timeout'>((resolve) =>
      setTimeout(() => resolve('timeout'), timeoutMs).unref(),
    );
    if ((await Promise.race([this.exited.then(() => 'exited' as const), timer])) === 'timeout') {
      throw new Error(
        `the guest did not restart within ${timeoutMs} ms; console tail:\n${this.console.slice(-3000)}`,
      );
    }
    return { tryboot: this.trybootFlag };
  }

  /** Pulls the power: the firmware's tryboot flag does not survive it. */
  async powerOff(): Promise<void> {
    if (this.child) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    this.trybootFlag = false;
  }

  async dispose(): Promise<void> {
    await this.powerOff();
    rmSync(this.scratch, { recursive: true, force: true });
  }

  /** Byte offset of the boot partition, read from the MBR. */
  private async bootOffset(): Promise<number> {
    const boot = (await readPartitionTable(this.diskImage)).partitions.find(
      (partition) => partition.number === PARTITION.boot,
    );
    if (!boot) throw new Error(`${this.diskImage} has no partition ${PARTITION.boot}`);
    return boot.startBytes;
  }
}

/** The rpi-3b board's device tree, which the firmware loads from the slot's directory. */
function raspi3bDeviceTree(): string {
  return basename(getLinuxBoard('rpi-3b').kernel.deviceTrees[0]!);
}
