/**
 * The contract of a Boardfleet unikernel-style image, shared by the image builder (which makes
 * it), `boardfleet run-image`, and the agent's `vm` strategy (which run it under qemu).
 *
 * The deployable artifact (kind `unikernel`) is an uncompressed tar holding {@link BUNDLE_FILES}:
 * the kernel, an initramfs whose only program is the application (started as PID 1 by a tiny
 * static pre-init that loads the VM's drivers, brings up the network and then `exec`s the
 * application), `launch.json` (this schema) and `firecracker.json` (Firecracker's own config).
 *
 * Launch-time settings travel on the kernel command line: `KEY=value` words that the kernel does
 * not know become the environment of PID 1, which the application inherits. That is how one image
 * is given its device credentials or a server address without rebuilding it.
 */
import { z } from 'zod';

export const BUNDLE_FILES = {
  launchSpec: 'launch.json',
  kernel: 'kernel',
  initramfs: 'initramfs.img',
  firecracker: 'firecracker.json',
} as const;

export const VM_ARCHITECTURES = ['x86_64', 'arm64'] as const;
export type VmArchitecture = (typeof VM_ARCHITECTURES)[number];

/** How qemu runs each architecture; the CPU is `host` under KVM and this one under TCG. */
export const QEMU_MACHINES: Record<
  VmArchitecture,
  { binary: string; machine: string; tcgCpu: string; console: string; debianPackage: string }
> = {
  x86_64: {
    binary: 'qemu-system-x86_64',
    machine: 'q35',
    tcgCpu: 'max',
    console: 'ttyS0',
    debianPackage: 'qemu-system-x86',
  },
  arm64: {
    binary: 'qemu-system-aarch64',
    machine: 'virt',
    tcgCpu: 'cortex-a72',
    console: 'ttyAMA0',
    debianPackage: 'qemu-system-arm',
  },
};

const port = z.number().int().min(1).max(65535);
const ipv4 = z.ipv4();

export const networkSchema = z.discriminatedUnion('mode', [
  /** No network device at all. */
  z.strictObject({ mode: z.literal('none') }),
  /** The pre-init asks a DHCP server (qemu's user network has one) for address, router and DNS. */
  z.strictObject({ mode: z.literal('dhcp') }),
  z.strictObject({
    mode: z.literal('static'),
    /** Address with prefix length, e.g. 10.0.2.15/24. */
    address: z
      .string()
      .regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'an IPv4 address with a prefix, e.g. 10.0.2.15/24'),
    gateway: ipv4.optional(),
    dns: z.array(ipv4).default([]),
  }),
]);
export type NetworkConfig = z.infer<typeof networkSchema>;

/** How a supervisor tells the application is up; both given means both must pass. */
export const readinessSchema = z
  .strictObject({
    /** An HTTP GET to this guest port and path answers 2xx. */
    http: z.strictObject({ port, path: z.string().startsWith('/').default('/') }).optional(),
    /** A console line matching this regular expression (JavaScript syntax) has been printed. */
    consoleLine: z.string().min(1).optional(),
  })
  .refine((readiness) => readiness.http || readiness.consoleLine, 'give http, consoleLine or both');
export type Readiness = z.infer<typeof readinessSchema>;

export const launchSpecSchema = z.strictObject({
  schemaVersion: z.literal(1),
  name: z.string().min(1),
  version: z.string().min(1),
  architecture: z.enum(VM_ARCHITECTURES),
  /** The kernel command line the image was built for; launchers append launch-time words. */
  cmdline: z.string(),
  memoryMiB: z.number().int().min(32).max(65536),
  cpus: z.number().int().min(1).max(64),
  network: networkSchema,
  /** Guest ports the application serves; a launcher forwards host ports to them. */
  ports: z
    .array(z.strictObject({ guest: port, protocol: z.enum(['tcp', 'udp']).default('tcp') }))
    .default([]),
  readiness: readinessSchema.optional(),
  /**
   * How to ask the application to stop: `ctrl-alt-del` makes the kernel send SIGINT to PID 1 (the
   * pre-init turned the reboot key into a signal), which the application answers by powering
   * off; `kill` ends the VM at once (for applications that keep nothing).
   */
  stop: z.enum(['ctrl-alt-del', 'kill']),
  /** Sizes in bytes of the kernel and initramfs, for reports. */
  sizes: z.strictObject({ kernel: z.number().int(), initramfs: z.number().int() }),
});
export type LaunchSpec = z.infer<typeof launchSpecSchema>;

/** A launch-time environment variable must survive the kernel command line unquoted. */
export const LAUNCH_ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;
export const LAUNCH_ENV_VALUE = /^[^\s"]*$/;

/**
 * The kernel command line for one launch: the image's own plus `KEY=value` words for the
 * application's environment. Refuses what the kernel would split or misread.
 */
export function launchCmdline(spec: Pick<LaunchSpec, 'cmdline'>, env: Record<string, string> = {}): string {
  const words = [spec.cmdline];
  for (const [name, value] of Object.entries(env)) {
    if (!LAUNCH_ENV_NAME.test(name)) {
      throw new Error(`environment name ${name} must be upper-case letters, digits and _`);
    }
    if (!LAUNCH_ENV_VALUE.test(value)) {
      throw new Error(
        `the value of ${name} may not hold spaces or double quotes (it rides on the kernel command line)`,
      );
    }
    words.push(`${name}=${value}`);
  }
  return words.filter(Boolean).join(' ');
}
