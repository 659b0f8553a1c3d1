import { existsSync, mkdirSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import packageJson from '../../package.json' with { type: 'json' };
import { BoardfleetError } from '../../protocol/errors.ts';
import { MOUNTS } from '../../protocol/linux-ab-layout.ts';
import { LAUNCH_ENV_NAME, LAUNCH_ENV_VALUE } from '../../protocol/unikernel-image.ts';
import { AppBundleStrategy } from '../update/app-bundle.strategy.ts';
import { rebootDevice } from '../update/device-reboot.ts';
import { LinuxAbStrategy } from '../update/linux-ab.strategy.ts';
import type { McuSerialStrategy } from '../update/mcu-serial.strategy.ts';
import { activationGate } from '../update/activation-gate.ts';
import { UpdateManager } from '../update/update-manager.ts';
import type { UpdateState } from '../update/update-state-machine.ts';
import { VmStrategy } from '../update/vm.strategy.ts';
import { ConsoleUploader } from '../vm/console-uploader.ts';
import { SystemCollectors } from './collectors.ts';
import {
  type AgentCredentials,
  fetchFleetKey,
  loadCredentials,
  provisionDevice,
  saveCredentials,
} from './credentials.ts';
import { DeviceAgent } from './device-agent.ts';

export const agentConfigSchema = z.strictObject({
  server: z.string().url(),
  mqtt: z.array(z.string().regex(/^mqtts?:\/\//, 'an mqtt:// or mqtts:// URL')).default([]),
  deviceId: z.string().optional(),
  secret: z.string().optional(),
  provisioningToken: z.string().optional(),
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
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/** Merges a JSON config file with flags (flags win) and checks it once, listing every bad key. */
export function loadAgentConfig(flags: Record<string, unknown>, configFile?: string): AgentConfig {
  const fromFile = configFile
    ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>)
    : {};
  const merged = {
    ...fromFile,
    ...Object.fromEntries(
      Object.entries(flags).filter(
        ([, value]) => value !== undefined && !(Array.isArray(value) && value.length === 0),
      ),
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

/** Credentials kept in the data dir, else the ones given, else provisioning with a fleet token. */
export async function obtainCredentials(config: AgentConfig): Promise<AgentCredentials> {
  const dataDir = resolve(config.dataDir);
  const stored = loadCredentials(dataDir);
  if (stored) return stored;
  let credentials: AgentCredentials;
  if (config.deviceId && config.secret) {
    const serverHost = new URL(config.server).hostname;
    credentials = {
      schemaVersion: 1,
      deviceId: config.deviceId,
      secret: config.secret,
      mqttUrl: config.mqtt[0] ?? `mqtt://${serverHost}:1883`,
      fleetPublicKeyPem: await fetchFleetKey(config.server),
    };
  } else if (config.provisioningToken) {
    credentials = await provisionDevice({
      serverUrl: config.server,
      provisioningToken: config.provisioningToken,
      name: config.name,
      ...(config.board ? { board: config.board } : {}),
      tags: config.tags,
    });
  } else {
    throw new BoardfleetError(
      'no-credentials',
      `no credentials in ${dataDir}: pass --device-id and --secret, or --provisioning-token`,
    );
  }
  saveCredentials(dataDir, credentials);
  return credentials;
}

export async function runAgent(config: AgentConfig, logger: Logger): Promise<DeviceAgent> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const credentials = await obtainCredentials(config);
  const version = packageJson.version;
  let agent: DeviceAgent | null = null;
  const attachedBoard = config.attachedBoard
    ? await attachedBoardStrategy(dataDir, config.attachedBoard, logger)
    : null;
  const { linuxAb } = config;
  const slots = existsSync(linuxAb.slotsFile)
    ? new LinuxAbStrategy({
        bootDir: linuxAb.bootDir,
        slotsFile: linuxAb.slotsFile,
        cmdlineFile: linuxAb.cmdlineFile,
        bootIdFile: linuxAb.bootIdFile,
        stateDir: dataDir,
        board: config.board ?? null,
        reboot: (mode) => rebootDevice(mode),
        connected: () => agent?.connected ?? false,
        healthTimeoutSeconds: linuxAb.healthTimeoutSeconds,
        log: (line) => logger.info({ slots: true }, line),
      })
    : null;
  const vms = config.vm
    ? new VmStrategy({
        root: resolve(dataDir, 'vm'),
        publish: config.vm.publish,
        accelerator: config.vm.accelerator,
        readyTimeoutSeconds: config.vm.readyTimeoutSeconds,
        env: config.vm.env,
        consoles: new ConsoleUploader({
          server: config.server,
          deviceId: credentials.deviceId,
          secret: credentials.secret,
          logger: logger.child({ component: 'vm-consoles' }),
        }),
        log: (line) => logger.info({ vm: true }, line),
      })
    : null;
  const updates: UpdateManager = new UpdateManager({
    dataDir,
    activationGate: activationGate({
      lockFile: resolve(config.updateLock ?? join(dataDir, 'update.lock')),
      ...(config.updateWindow ? { window: config.updateWindow } : {}),
    }),
    serverUrl: config.server,
    auth: { deviceId: credentials.deviceId, secret: credentials.secret },
    fleetPublicKeyPem: credentials.fleetPublicKeyPem,
    strategies: {
      'app-bundle': new AppBundleStrategy(resolve(dataDir, 'app'), (line) =>
        logger.info({ app: true }, line),
      ),
      ...(attachedBoard ? { 'mcu-serial': attachedBoard } : {}),
      ...(slots ? { 'linux-ab': slots } : {}),
      ...(vms ? { vm: vms } : {}),
    },
    report: ({ deploymentId, state, progress, reason }) =>
      agent?.recordEvent(
        'deployment',
        { state, ...(progress !== undefined ? { progress } : {}) },
        { deploymentId, ...(reason ? { message: reason } : {}) },
      ),
    logger: logger.child({ component: 'updates' }),
    afterSave: pauseAtUpdateStateTestHook(
      process.env.BOARDFLEET_TEST_PAUSE_AT_UPDATE_STATE,
      (): UpdateManager => updates,
    ),
  });
  agent = new DeviceAgent({
    deviceId: credentials.deviceId,
    secret: credentials.secret,
    mqttUrls: config.mqtt.length > 0 ? config.mqtt : [credentials.mqttUrl],
    dataDir,
    heartbeatSeconds: config.heartbeat,
    keepaliveSeconds: config.keepalive,
    collectors: new SystemCollectors(dataDir, version, config.board ?? null),
    logger,
    updates,
    ...(attachedBoard ? { attachedBoards: () => [attachedBoard.describe()] } : {}),
  });
  // Resuming is queued before the first desired state can arrive, and not awaited: a health
  // check after a reboot waits for this agent to connect.
  void updates.start();
  agent.start();
  return agent;
}

/**
 * The attached board's strategy, imported only when a board is configured: the serial port
 * code needs `serialport`, a native module a Linux image's bundled agent does not carry.
 */
async function attachedBoardStrategy(
  dataDir: string,
  attached: NonNullable<AgentConfig['attachedBoard']>,
  logger: Logger,
): Promise<McuSerialStrategy> {
  const [{ serialAttachedBoard }, { McuSerialStrategy }] = await Promise.all([
    import('../../mcu/attached-board.ts'),
    import('../update/mcu-serial.strategy.ts'),
  ]);
  return new McuSerialStrategy(
    resolve(dataDir, 'mcu'),
    serialAttachedBoard(attached.board, attached.port),
    (line) => logger.info({ attachedBoard: true }, line),
  );
}

/**
 * Test hook for the end-to-end tests, unset in production: with
 * BOARDFLEET_TEST_PAUSE_AT_UPDATE_STATE=<state>@<version> the agent freezes its whole event loop
 * right after it has saved that state for that version (nothing after the save runs, not even
 * sending the report), and says so on stderr, so a test can kill -9 it at exactly that point.
 */
function pauseAtUpdateStateTestHook(
  setting: string | undefined,
  updates: () => UpdateManager,
): ((saved: UpdateState) => void) | undefined {
  if (!setting) return undefined;
  const [state, version] = setting.split('@');
  return (saved) => {
    if (saved !== state || updates().current.deployment?.version !== version) return;
    writeSync(2, `test hook: paused at update state ${saved}\n`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  };
}
