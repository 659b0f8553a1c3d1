import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BoardfleetError } from '../../protocol/errors.ts';
import { loadRecipeOfKind, RECIPES_DIRECTORY } from '../recipe/recipe.ts';
import type { UnikernelRecipe } from '../recipe/unikernel-recipe.ts';
import { kconfigFragment, optionsNotInConfig, planKernelConfig } from './kernel-config.ts';

const x86 = { id: 'vm-x86_64', architecture: 'amd64' } as const;
const arm64 = { id: 'vm-arm64', architecture: 'arm64' } as const;

type KernelFields = Partial<UnikernelRecipe['kernel']>;

/** A recipe as the planner sees it: a static C program serving HTTP with DHCP, unless changed. */
function recipe(change: Partial<Omit<UnikernelRecipe, 'kernel'>> & { kernel?: KernelFields } = {}) {
  const { kernel, ...rest } = change;
  return {
    name: 'hello',
    app: { args: [], env: {}, c: { sources: ['hello.c'], cflags: [] } },
    network: { mode: 'dhcp' },
    stop: 'kill',
    cpus: 1,
    ...rest,
    kernel: { config: 'specialised', modules: [], cmdline: [], filesystems: [], devices: [], ...kernel },
  } as Parameters<typeof planKernelConfig>[0];
}

/** The options turned on. */
const names = (plan: ReturnType<typeof planKernelConfig>) =>
  plan.options.filter((option) => option.value === 'y').map((option) => option.name);

describe('planKernelConfig', () => {
  it.each([
    {
      case: 'x86_64 boots by PVH on its 8250 console with virtio on PCI (q35) and MMIO (Firecracker)',
      recipe: recipe(),
      board: x86,
      has: [
        'PVH',
        'SERIAL_8250_CONSOLE',
        'VIRTIO_PCI',
        'VIRTIO_MMIO_CMDLINE_DEVICES',
        'ACPI',
        'BLK_DEV_INITRD',
        'RD_ZSTD',
      ],
      lacks: ['SERIAL_AMBA_PL011', 'PCI_HOST_GENERIC', 'SMP', 'VT'],
    },
    {
      case: 'arm64 gets the PL011 console and the generic PCIe host',
      recipe: recipe(),
      board: arm64,
      has: ['SERIAL_AMBA_PL011_CONSOLE', 'PCI_HOST_GENERIC', 'VIRTIO_PCI'],
      lacks: ['PVH', 'SERIAL_8250', 'ACPI'],
    },
    {
      case: 'DHCP brings IPv4 and virtio-net, reno TCP adds nothing',
      recipe: recipe(),
      board: x86,
      has: ['NET', 'INET', 'VIRTIO_NET', 'NETDEVICES'],
      lacks: ['IPV6', 'TCP_CONG_ADVANCED', 'SYN_COOKIES'],
    },
    {
      case: 'no network: no network stack, no card',
      recipe: recipe({ network: { mode: 'none' } }),
      board: x86,
      has: [],
      lacks: ['NET', 'INET', 'VIRTIO_NET'],
    },
    {
      case: 'a static address with IPv6, BBR and SYN cookies',
      recipe: recipe({
        network: { mode: 'static', address: '10.0.2.15/24', dns: [] },
        kernel: { ipv6: true, tcp: { congestion: 'bbr', syncookies: true } },
      }),
      board: x86,
      has: ['INET', 'IPV6', 'TCP_CONG_ADVANCED', 'TCP_CONG_BBR', 'DEFAULT_BBR', 'SYN_COOKIES'],
      lacks: ['TCP_CONG_CUBIC'],
    },
    {
      case: 'cubic is chosen as the default congestion control',
      recipe: recipe({ kernel: { tcp: { congestion: 'cubic', syncookies: false } } }),
      board: arm64,
      has: ['TCP_CONG_CUBIC', 'DEFAULT_CUBIC'],
      lacks: ['TCP_CONG_BBR', 'SYN_COOKIES'],
    },
    {
      case: 'ext4 brings the block layer and virtio-blk; tmpfs brings shmem',
      recipe: recipe({ kernel: { filesystems: ['ext4', 'tmpfs'] } }),
      board: x86,
      has: ['EXT4_FS', 'BLOCK', 'VIRTIO_BLK', 'TMPFS', 'SHMEM'],
      lacks: ['VFAT_FS'],
    },
    {
      case: '9p needs no block device',
      recipe: recipe({ network: { mode: 'none' }, kernel: { filesystems: ['9p'] } }),
      board: arm64,
      has: ['9P_FS', 'NET_9P_VIRTIO', 'NET'],
      lacks: ['BLOCK', 'INET'],
    },
    {
      case: 'stop: signal on x86_64 needs the PS/2 keyboard and the VT',
      recipe: recipe({ stop: 'signal' }),
      board: x86,
      has: ['VT', 'INPUT', 'SERIO_I8042', 'KEYBOARD_ATKBD'],
      lacks: ['VIRTIO_INPUT'],
    },
    {
      case: 'stop: signal on arm64 needs the virtio keyboard',
      recipe: recipe({ stop: 'signal' }),
      board: arm64,
      has: ['VT', 'INPUT', 'VIRTIO_INPUT'],
      lacks: ['SERIO_I8042'],
    },
    {
      case: 'a Node application gets what libuv and V8 use; two CPUs get SMP',
      recipe: recipe({
        app: { args: [], env: {}, node: { entry: 'a.mjs', boardfleetAgent: false, version: '20' } },
        cpus: 2,
      }),
      board: x86,
      has: ['EPOLL', 'EVENTFD', 'UNIX', 'SMP'],
      lacks: [],
    },
    {
      case: 'devices the recipe names',
      recipe: recipe({ kernel: { devices: ['virtio-rng', 'virtio-vsock', 'virtio-console'] } }),
      board: x86,
      has: ['HW_RANDOM_VIRTIO', 'VIRTIO_VSOCKETS', 'VIRTIO_CONSOLE'],
      lacks: ['VIRTIO_BLK'],
    },
  ])('$case', ({ recipe: input, board, has, lacks }) => {
    const plan = planKernelConfig(input, board);
    expect(names(plan)).toEqual(expect.arrayContaining(has));
    for (const name of lacks) expect(names(plan)).not.toContain(name);
    const every = plan.options.map((option) => option.name);
    expect(new Set(every).size).toBe(every.length);
    for (const option of plan.options) expect(option.reason).not.toBe('');
  });

  it.each([
    { board: x86, target: 'vmlinux', output: 'vmlinux', arch: 'x86_64' },
    { board: arm64, target: 'Image', output: 'arch/arm64/boot/Image', arch: 'arm64' },
  ])('builds $target for $board.id', ({ board, target, output, arch }) => {
    expect(planKernelConfig(recipe(), board)).toMatchObject({ target, output, arch });
  });

  it('gives an option wanted for two reasons both reasons', () => {
    const plan = planKernelConfig(recipe({ kernel: { filesystems: ['9p'] } }), x86);
    const net = plan.options.find((option) => option.name === 'NET');
    expect(net?.reason).toContain('virtio-net');
    expect(net?.reason).toContain('9p');
  });

  it.each([{ device: 'virtio-input', board: x86, because: 'the recipe names it' }] as const)(
    'refuses $device, which $board.id lacks',
    ({ device, board, because }) => {
      const plan = () => planKernelConfig(recipe({ kernel: { devices: [device] } }), board);
      expect(plan).toThrow(BoardfleetError);
      expect(plan).toThrow(new RegExp(`asks for ${device} \\(${because}.*board ${board.id} does not have`));
    },
  );
});

describe('options turned off', () => {
  const valueOf = (plan: ReturnType<typeof planKernelConfig>, name: string) =>
    plan.options.find((option) => option.name === name)?.value;

  it.each([
    { case: 'IPv4 only', kernel: {}, ipv6: 'n' },
    { case: 'IPv6 asked', kernel: { ipv6: true }, ipv6: 'y' },
  ])('sets IPV6=$ipv6 and turns off socket monitoring: $case', ({ kernel, ipv6 }) => {
    const plan = planKernelConfig(recipe({ kernel }), x86);
    expect(valueOf(plan, 'IPV6')).toBe(ipv6);
    expect(valueOf(plan, 'INET_DIAG')).toBe('n');
  });

  it('leaves the IP options alone without a network, and the ACPI devices a VM lacks off on x86_64 only', () => {
    const offline = planKernelConfig(recipe({ network: { mode: 'none' } }), x86);
    expect(valueOf(offline, 'IPV6')).toBeUndefined();
    expect(valueOf(offline, 'ACPI_BATTERY')).toBe('n');
    expect(valueOf(planKernelConfig(recipe(), arm64), 'ACPI_BATTERY')).toBeUndefined();
  });

  it('keeps one 8250 UART on x86_64 (the console) and no HID with the reboot key', () => {
    const plan = planKernelConfig(recipe({ stop: 'signal' }), x86);
    expect(valueOf(plan, 'SERIAL_8250_NR_UARTS')).toBe('1');
    expect(valueOf(plan, 'HID')).toBe('n');
    expect(kconfigFragment(plan.options)).toContain('CONFIG_SERIAL_8250_NR_UARTS=1\n');
  });
});

describe('kconfigFragment and optionsNotInConfig', () => {
  const options = planKernelConfig(recipe(), x86).options.slice(0, 3);

  it('writes one CONFIG_ line per option', () => {
    expect(kconfigFragment(options).trim().split('\n')).toEqual(
      options.map((option) => `CONFIG_${option.name}=y`),
    );
  });

  const off = { name: 'IPV6', value: 'n', reason: 'IPv4 only' } as const;
  it('writes an option turned off the way .config does', () => {
    expect(kconfigFragment([off])).toBe('# CONFIG_IPV6 is not set\n');
  });

  it.each([
    { case: 'not set', config: '# CONFIG_IPV6 is not set\n', missing: [] },
    { case: 'absent', config: '', missing: [] },
    { case: 'still on', config: 'CONFIG_IPV6=y\n', missing: ['IPV6'] },
  ])('checks an option turned off: $case', ({ config, missing }) => {
    expect(optionsNotInConfig([off], config).map((option) => option.name)).toEqual(missing);
  });

  it.each([
    { case: 'every option set', config: kconfigFragment(options), missing: [] },
    {
      case: 'one dropped by olddefconfig',
      config: `${kconfigFragment(options.slice(1))}# CONFIG_${options[0]?.name} is not set\n`,
      missing: [options[0]?.name],
    },
    { case: 'an empty config', config: '', missing: options.map((option) => option.name) },
    {
      case: 'a prefix of another name does not count',
      config: `${kconfigFragment(options.slice(1))}CONFIG_${options[0]?.name}_EXTRA=y\n`,
      missing: [options[0]?.name],
    },
  ])('finds what is missing: $case', ({ config, missing }) => {
    expect(optionsNotInConfig(options, config).map((option) => option.name)).toEqual(missing);
  });
});

describe('the recipe’s kernel field', () => {
  const directory = mkdtempSync(join(tmpdir(), 'boardfleet-kernel-recipe-'));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  const load = (kernel: string) => {
    const file = join(directory, 'r.yaml');
    writeFileSync(
      file,
      `kind: unikernel\nname: r\nversion: 1.0.0\napp: { c: { sources: [${join(RECIPES_DIRECTORY, 'http-hello/http-hello.c')}] } }\n${kernel}\n`,
    );
    return () => loadRecipeOfKind(file, 'unikernel');
  };

  it.each([
    { yaml: '', config: 'debian' },
    { yaml: 'kernel: specialised', config: 'specialised' },
    { yaml: 'kernel: { config: specialised, ipv6: true, filesystems: [ext4] }', config: 'specialised' },
  ])('reads "$yaml" as $config', ({ yaml, config }) => {
    expect(load(yaml)().kernel.config).toBe(config);
  });

  it.each([
    { yaml: 'kernel: { config: specialised, modules: [vsock] }', error: /kernel\.modules.*no modules/ },
    { yaml: 'kernel: { ipv6: true }', error: /kernel\.ipv6.*only a specialised kernel/ },
    { yaml: 'kernel: { config: specialised, devices: [virtio-gpu] }', error: /kernel\.devices/ },
    { yaml: 'kernel: tiny', error: /kernel/ },
  ])('refuses "$yaml"', ({ yaml, error }) => {
    expect(load(yaml)).toThrow(error);
  });
});
