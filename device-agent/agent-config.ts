import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { BoardfleetError } from '../protocol/errors.ts';
import { MOUNTS } from '../protocol/linux-ab-layout.ts';
import { LAUNCH_ENV_NAME, LAUNCH_ENV_VALUE } from '../protocol/unikernel-image.ts';
import { LOG_FORMATS, LOG_LEVELS } from '../lib/log-output.ts';

export const agentConfigSchema = z.strictObject({
  server: z.string().url(),
  mqtt: z.array(z.string().regex(/^mqtts?:\/\//, 'an mqtt:// or mqtts:// URL')).default([]),
  deviceId: z.string().optional(),
  secret: z.string().optional(),
  provisioningToken: z.string().optional(),
  /**
   * The fleet CA (PEM file) the server's certificate must chain to. Without it a provisioning
   * token's pin, or the CA kept in the data dir from an earlier start, is used.
   */
  ca: z.string().min(1).optional(),
  /** Replace credentials already in the data dir with the ones given or provisioned now. */
  force: z.boolean().default(false),
  name: z.string().min(1).max(128).default(hostname()),
  board: z.string().min(1).max(64).optional(),
  tags: z.array(z.string()).default([]),
  /** An Arduino-class board on a serial port, flashed by `mcu-firmware` rollouts. */
  attachedBoard: z
    .strictObject({ board: z.string().min(1), port: z.string().min(1).default('auto') })
    .optional(),
  /**
   * A/B root slots (`linux-ab` rollouts), used when `slotsFile` exists, as it does in a
   * Boardfleet Linux image. The defaults are where the image puts things.
   */
  linuxAb: z
    .strictObject({
      slotsFile: z.string().min(1).default(MOUNTS.slotDevices),
      bootDir: z.string().min(1).default(MOUNTS.boot),
      cmdlineFile: z.string().min(1).default('/proc/cmdline'),
      bootIdFile: z.string().min(1).default('/proc/sys/kernel/random/boot_id'),
      /** How long the agent on a new slot has to connect before the slot is rolled back. */
      healthTimeoutSeconds: z.coerce.number().min(1).max(3600).default(180),
    })
    .prefault({}),
  /**
   * Unikernel images run as VMs (`vm` rollouts): each `publish` entry is a host port that leads
   * to the committed VM's guest port; `env` is every VM's launch-time environment.
   */
  vm: z
    .strictObject({
      publish: z
        .array(
          z.strictObject({
            hostPort: z.number().int().min(1).max(65535),
            guestPort: z.number().int().min(1).max(65535),
            address: z.string().min(1).default('0.0.0.0'),
          }),
        )
        .default([]),
      accelerator: z.enum(['auto', 'kvm', 'tcg']).default('auto'),
      readyTimeoutSeconds: z.coerce.number().min(1).max(3600).default(180),
      env: z
        .record(
          z.string(),
          z
            .string()
            .regex(LAUNCH_ENV_VALUE, 'no spaces or double quotes (it rides on the kernel command line)'),
        )
        // Checked here rather than as the record's key schema, whose error does not say why.
        .superRefine((env, context) => {
          for (const name of Object.keys(env)) {
            if (!LAUNCH_ENV_NAME.test(name)) {
              context.addIssue({ code: 'custom', path: [name], message: 'upper-case letters, digits and _' });
            }
          }
        })
        .default({}),
    })
    .optional(),
  dataDir: z.string().default('./agent-data'),
  /** While this file exists (holding a live pid, or anything else), new versions wait to be activated. */
  updateLock: z.string().min(1).optional(),
  /** Activate new versions only within `HH:MM-HH:MM` local time. */
  updateWindow: z
    .string()
    .regex(/^\d\d:\d\d-\d\d:\d\d$/, 'HH:MM-HH:MM, e.g. 02:00-04:30')
    .optional(),
  heartbeat: z.coerce.number().min(1).max(3600).default(30),
  keepalive: z.coerce.number().min(1).max(3600).default(30),
  /**
   * Seconds to wait, once connected, for the server's retained hello before the broker is called
   * not Boardfleet's. It comes right after the subscription; a slow link may want more.
   */
  helloTimeout: z.coerce.number().min(1).max(600).default(10),
  /** From LOG_LEVEL. */
  logLevel: z
    .enum(LOG_LEVELS, { error: `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` })
    .default('info'),
  /** From LOG_FORMAT; unset, pretty on a terminal and JSON otherwise. */
  logFormat: z.enum(LOG_FORMATS, { error: `LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}` }).optional(),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/**
 * Merges a JSON config file with flags (flags win) and checks it once, listing every bad key.
 * Secrets given as files (`secretFile`, `provisioningTokenFile`) are read first, so a file given
 * as a flag wins over a secret written in the config file.
 */
export function loadAgentConfig(flags: Record<string, unknown>, configFile?: string): AgentConfig {
  const fromFile = configFile
    ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>)
    : {};
  const merged = {
    ...readSecretFiles(fromFile, configFile ?? ''),
    ...readSecretFiles(
      Object.fromEntries(
        Object.entries(flags).filter(
          ([, value]) => value !== undefined && !(Array.isArray(value) && value.length === 0),
        ),
      ),
      'the flags and environment',
    ),
  };
  const parsed = agentConfigSchema.safeParse(merged);
  if (!parsed.success) {
    throw new BoardfleetError(
      'invalid-config',
      `invalid agent configuration:\n  ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n  ')}`,
    );
  }
  return parsed.data;
}

/** Each secret option and the option naming a file that holds it. */
const SECRET_FILE_OPTIONS = { secret: 'secretFile', provisioningToken: 'provisioningTokenFile' } as const;

/**
 * Replaces `secretFile` and `provisioningTokenFile` with the secrets they hold (surrounding
 * whitespace removed). Secrets travel in files or the environment because a command line shows
 * in `ps` to every user of the machine. Errors name the file, never its content.
 */
export function readSecretFiles(options: Record<string, unknown>, origin: string): Record<string, unknown> {
  const result = { ...options };
  for (const [option, fileOption] of Object.entries(SECRET_FILE_OPTIONS)) {
    const path = result[fileOption];
    if (path === undefined) continue;
    delete result[fileOption];
    if (typeof path !== 'string' || path === '')
      throw new BoardfleetError('invalid-config', `${fileOption} in ${origin}: a file path`);
    if (result[option] !== undefined)
      throw new BoardfleetError(
        'invalid-config',
        `both ${option} and ${fileOption} given in ${origin}: give one`,
      );
    let secret: string;
    try {
      secret = readFileSync(path, 'utf8').trim();
    } catch (error) {
      throw new BoardfleetError(
        'invalid-config',
        `cannot read ${fileOption} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
      );
    }
    if (!secret) throw new BoardfleetError('invalid-config', `${fileOption} ${path} is empty`);
    result[option] = secret;
  }
  return result;
}

/**
 * The agent's secrets from the environment (`boardfleet agent` reads these and no other
 * variables): inline, or as the path of a file holding them.
 */
export function agentSecretsFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  return {
    secret: env.BOARDFLEET_SECRET,
    secretFile: env.BOARDFLEET_SECRET_FILE,
    provisioningToken: env.BOARDFLEET_PROVISIONING_TOKEN,
    provisioningTokenFile: env.BOARDFLEET_PROVISIONING_TOKEN_FILE,
  };
}

/**
 * Agent options from the environment, for images configured at launch (a unikernel's kernel
 * command line). Unset variables leave the option to the config file.
 */
export function agentFlagsFromEnvironment(env: NodeJS.ProcessEnv): Record<string, unknown> {
  return {
    server: env.BOARDFLEET_SERVER,
    deviceId: env.BOARDFLEET_DEVICE_ID,
    ca: env.BOARDFLEET_CA,
    ...agentSecretsFromEnvironment(env),
    name: env.BOARDFLEET_NAME,
    board: env.BOARDFLEET_BOARD ?? env.BOARDFLEET_IMAGE_BOARD,
    mqtt: env.BOARDFLEET_MQTT?.split(',').filter(Boolean),
  };
}
