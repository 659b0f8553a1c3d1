import type { VmBoard } from '../../boards/board-catalogue.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { KERNEL_DEVICES, UnikernelRecipe } from '../recipe/unikernel-recipe.ts';

type KernelDevice = (typeof KERNEL_DEVICES)[number];

/** One Kconfig option set on `tinyconfig`, with why: the build log and the SBOM list them. */
export interface KconfigOption {
  /** Without the CONFIG_ prefix. */
  name: string;
  /** `n`: an option the kernel turns on by default that this application does not need; a number for an int option. */
  value: 'y' | 'n' | `${number}`;
  reason: string;
}

/** How to build a specialised kernel for one recipe and board. */
export interface KernelPlan {
  /** The kernel's ARCH= */
  arch: 'x86_64' | 'arm64';
  /** The make target, and where the file it makes is in the tree. */
  target: 'vmlinux' | 'Image';
  output: string;
  options: KconfigOption[];
}

/**
 * The devices each VM board's launchers give a guest (qemu q35 and Firecracker on x86_64, qemu
 * virt on arm64): what a recipe may ask a specialised kernel to drive.
 */
const BOARD_DEVICES: Record<VmBoard['architecture'], readonly KernelDevice[]> = {
  amd64: ['virtio-net', 'virtio-blk', 'virtio-console', 'virtio-rng', 'virtio-vsock'],
  arm64: ['virtio-net', 'virtio-blk', 'virtio-console', 'virtio-rng', 'virtio-vsock', 'virtio-input'],
};

const DEVICE_OPTIONS: Record<KernelDevice, string[]> = {
  'virtio-net': ['NET', 'NETDEVICES', 'NET_CORE', 'VIRTIO_NET'],
  'virtio-blk': ['BLOCK', 'BLK_DEV', 'VIRTIO_BLK'],
  'virtio-console': ['TTY', 'VIRTIO_CONSOLE'],
  'virtio-rng': ['HW_RANDOM', 'HW_RANDOM_VIRTIO'],
  'virtio-vsock': ['NET', 'VSOCKETS', 'VIRTIO_VSOCKETS'],
  'virtio-input': ['INPUT', 'VIRTIO_INPUT'],
};

type Filesystem = UnikernelRecipe['kernel']['filesystems'][number];

const FILESYSTEM_OPTIONS: Record<Filesystem, { options: string[]; device?: KernelDevice }> = {
  ext4: { options: ['EXT4_FS'], device: 'virtio-blk' },
  vfat: { options: ['VFAT_FS', 'NLS_CODEPAGE_437', 'NLS_ISO8859_1'], device: 'virtio-blk' },
  squashfs: { options: ['SQUASHFS', 'SQUASHFS_ZSTD'], device: 'virtio-blk' },
  tmpfs: { options: ['SHMEM', 'TMPFS'] },
  '9p': { options: ['NET', 'NET_9P', 'NET_9P_VIRTIO', '9P_FS'] },
};

const TCP_CONGESTION: Record<'reno' | 'cubic' | 'bbr', string[]> = {
  // Reno is built into every kernel with TCP: nothing to add.
  reno: [],
  cubic: ['TCP_CONG_ADVANCED', 'TCP_CONG_CUBIC', 'DEFAULT_CUBIC'],
  bbr: ['TCP_CONG_ADVANCED', 'TCP_CONG_BBR', 'DEFAULT_BBR'],
};

type KernelRecipe = Pick<UnikernelRecipe, 'name' | 'kernel' | 'network' | 'app' | 'stop' | 'cpus'>;

/**
 * The configuration of a specialised kernel for `recipe` on `board` (Lupine-style): `tinyconfig`
 * plus only what the application, its network choices, its filesystems and the board's devices
 * need, each with its reason. No modules; the initramfs stays a separate file of the bundle, so
 * the kernel's cache key is its configuration alone and every launcher takes the bundle
 * unchanged. Throws `kernel-device-missing` for a device the board lacks.
 */
export function planKernelConfig(
  recipe: KernelRecipe,
  board: Pick<VmBoard, 'id' | 'architecture'>,
): KernelPlan {
  const options = new Map<string, KconfigOption>();
  const set = (names: string[], value: KconfigOption['value'], reason: string) => {
    for (const name of names) {
      const known = options.get(name);
      if (!known || known.value !== value) options.set(name, { name, value, reason });
      else if (!known.reason.split('; ').includes(reason)) known.reason += `; ${reason}`;
    }
  };
  const add = (names: string[], reason: string) => set(names, 'y', reason);
  const x86 = board.architecture === 'amd64';

  add(['BLK_DEV_INITRD', 'RD_ZSTD'], 'the application and the pre-init come in a zstd initramfs');
  add(['BINFMT_ELF'], 'the pre-init and the application are ELF programs');
  add(['DEVTMPFS', 'PROC_FS', 'SYSFS'], 'the pre-init mounts /dev, /proc and /sys');
  add(['PRINTK'], 'a panic or a failed boot says why on the console');
  add(['MULTIUSER', 'FUTEX', 'POSIX_TIMERS'], 'the C library of every program uses them');
  if (x86) {
    add(['TTY', 'SERIAL_8250', 'SERIAL_8250_CONSOLE'], 'the console is the 8250 serial port (ttyS0)');
    add(
      ['HYPERVISOR_GUEST', 'PVH'],
      'qemu and Firecracker boot the ELF vmlinux straight at its PVH entry, no firmware',
    );
    add(
      ['HYPERVISOR_GUEST', 'PARAVIRT', 'KVM_GUEST'],
      'the KVM clock and paravirtual calls when KVM is used',
    );
    add(['PCI', 'VIRTIO_MENU', 'VIRTIO_PCI'], 'q35 gives the guest its virtio devices on PCI');
    add(['ACPI'], 'powering off ends the VM (q35 powers off through ACPI)');
    // Probing the three legacy UARTs nobody attached costs a tenth of a second under TCG.
    set(['SERIAL_8250_NR_UARTS', 'SERIAL_8250_RUNTIME_UARTS'], '1', 'one serial port: the console');
  } else {
    add(['TTY', 'SERIAL_AMBA_PL011', 'SERIAL_AMBA_PL011_CONSOLE'], 'the console is the PL011 UART (ttyAMA0)');
    add(
      ['PCI', 'PCI_HOST_GENERIC', 'VIRTIO_MENU', 'VIRTIO_PCI'],
      'qemu virt gives the guest its virtio devices on PCIe',
    );
  }
  add(
    ['VIRTIO_MENU', 'VIRTIO_MMIO', 'VIRTIO_MMIO_CMDLINE_DEVICES'],
    'Firecracker gives the guest its virtio devices on MMIO, announced on the command line',
  );
  if (recipe.cpus > 1) add(['SMP'], `the recipe asks for ${recipe.cpus} CPUs`);

  if (recipe.stop === 'signal') {
    const keyboard = x86 ? ['SERIO', 'SERIO_I8042', 'INPUT_KEYBOARD', 'KEYBOARD_ATKBD'] : ['VIRTIO_INPUT'];
    add(
      ['INPUT', 'VT', ...keyboard],
      'the reboot key (Ctrl-Alt-Del) reaches the application as SIGINT (stop: signal)',
    );
    set(['HID'], 'n', 'the keyboard is PS/2 or virtio, never USB or Bluetooth');
  }
  if (recipe.app.node) {
    add(
      [
        'EPOLL',
        'EVENTFD',
        'SIGNALFD',
        'TIMERFD',
        'ADVISE_SYSCALLS',
        'FILE_LOCKING',
        'SHMEM',
        'UNIX',
        'MEMBARRIER',
      ],
      'Node.js (libuv and V8) uses them',
    );
  }

  const devices = new Map<KernelDevice, string>();
  if (recipe.network.mode !== 'none') devices.set('virtio-net', `network: ${recipe.network.mode}`);
  for (const filesystem of recipe.kernel.filesystems) {
    const { device } = FILESYSTEM_OPTIONS[filesystem];
    if (device && !devices.has(device)) devices.set(device, `${filesystem} is mounted from a block device`);
  }
  for (const device of recipe.kernel.devices) devices.set(device, 'the recipe names it (kernel.devices)');
  for (const [device, why] of devices) {
    if (!BOARD_DEVICES[board.architecture].includes(device)) {
      throw new BoardfleetError(
        'kernel-device-missing',
        `recipe ${recipe.name} asks for ${device} (${why}), which board ${board.id} does not have; it has ${BOARD_DEVICES[board.architecture].join(', ')}`,
      );
    }
    add(['VIRTIO_MENU', ...DEVICE_OPTIONS[device]], `${device}: ${why}`);
  }

  if (recipe.network.mode !== 'none') {
    const how =
      recipe.network.mode === 'dhcp'
        ? 'the pre-init asks DHCP for an IPv4 address over UDP'
        : `the static IPv4 address ${recipe.network.address}`;
    add(['NET', 'INET'], how);
    if (recipe.kernel.ipv6) add(['IPV6'], 'the recipe asks for IPv6 (kernel.ipv6)');
    else set(['IPV6'], 'n', 'IPv4 only: the recipe does not ask for IPv6 (kernel.ipv6)');
    set(['INET_DIAG'], 'n', 'no socket monitoring (ss) in a single-application guest');
    const tcp = recipe.kernel.tcp ?? { congestion: 'reno', syncookies: false };
    add(TCP_CONGESTION[tcp.congestion], `TCP congestion control ${tcp.congestion} (kernel.tcp.congestion)`);
    if (tcp.syncookies) add(['SYN_COOKIES'], 'SYN cookies against SYN floods (kernel.tcp.syncookies)');
  }
  for (const filesystem of recipe.kernel.filesystems) {
    add(FILESYSTEM_OPTIONS[filesystem].options, `the application mounts ${filesystem} (kernel.filesystems)`);
  }
  if (x86) {
    set(
      ['ACPI_AC', 'ACPI_BATTERY', 'ACPI_FAN', 'ACPI_THERMAL'],
      'n',
      'a VM has no mains adapter, battery, fan or thermal zone',
    );
  }

  return {
    arch: x86 ? 'x86_64' : 'arm64',
    target: x86 ? 'vmlinux' : 'Image',
    output: x86 ? 'vmlinux' : 'arch/arm64/boot/Image',
    options: [...options.values()],
  };
}

/** The options as a Kconfig fragment for merge_config.sh. */
export function kconfigFragment(options: KconfigOption[]): string {
  return options
    .map((option) =>
      option.value === 'n'
        ? `# CONFIG_${option.name} is not set\n`
        : `CONFIG_${option.name}=${option.value}\n`,
    )
    .join('');
}

/**
 * The asked options that the final `.config` does not hold as asked: the source does not know
 * them, or their dependencies are not met. Empty when every one is there.
 */
export function optionsNotInConfig(options: KconfigOption[], finalConfig: string): KconfigOption[] {
  const set = new Map<string, string>();
  for (const line of finalConfig.split('\n')) {
    const match = /^CONFIG_([A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (match) set.set(match[1] as string, match[2] as string);
  }
  return options.filter((option) => (set.get(option.name) ?? 'n') !== option.value);
}
