import { z } from 'zod';

const timestamp = z.number().int().nonnegative().describe('milliseconds since the Unix epoch');

export const presenceSchema = z.strictObject({
  state: z.enum(['online', 'offline']),
  /** Why a device went offline: a clean shutdown, or the broker's last-will after a lost connection. */
  reason: z.enum(['started', 'shutdown', 'connection-lost']),
  at: timestamp,
  agentVersion: z.string().max(64).optional(),
});

const slotSchema = z.strictObject({
  name: z.string().min(1).max(64),
  artifact: z.string().max(128).nullable(),
  version: z.string().max(64).nullable(),
  active: z.boolean(),
});

const attachedBoardSchema = z.strictObject({
  port: z.string().max(256),
  board: z.string().max(64).nullable(),
  firmware: z.string().max(128).nullable(),
  firmwareVersion: z.string().max(64).nullable(),
});

export const inventorySchema = z.strictObject({
  board: z.string().min(1).max(64),
  os: z.string().max(256),
  kernel: z.string().max(128),
  architecture: z.string().max(32),
  agentVersion: z.string().max(64),
  hostname: z.string().max(256),
  slots: z.array(slotSchema).max(16),
  attachedBoards: z.array(attachedBoardSchema).max(32),
  at: timestamp,
});

export const healthSchema = z.strictObject({
  at: timestamp,
  uptimeSeconds: z.number().nonnegative(),
  load: z.tuple([z.number().nonnegative(), z.number().nonnegative(), z.number().nonnegative()]),
  memory: z.strictObject({ totalBytes: z.number().nonnegative(), availableBytes: z.number().nonnegative() }),
  disk: z.strictObject({ totalBytes: z.number().nonnegative(), freeBytes: z.number().nonnegative() }),
  /** Null where the kernel exposes no thermal zone (virtual machines, most containers). */
  cpuTemperatureCelsius: z.number().min(-100).max(200).nullable(),
  agentRssBytes: z.number().nonnegative(),
});

/** Something that happened on the device; `id` makes redelivery harmless (stored once). */
export const deviceEventSchema = z.strictObject({
  id: z.string().min(1).max(64),
  at: timestamp,
  type: z.string().min(1).max(64),
  deploymentId: z.string().max(64).optional(),
  message: z.string().max(2048).optional(),
  data: z.record(z.string(), z.unknown()).optional(),
});

/**
 * The versioned state the server wants a device to run; retained, so a device that reconnects
 * reads the newest one. The agent ignores a version lower than the one it already reconciled.
 */
export const desiredStateSchema = z.strictObject({
  version: z.number().int().nonnegative(),
  issuedAt: timestamp,
  deployment: z
    .strictObject({
      id: z.string().min(1).max(64),
      strategy: z.enum(['app-bundle', 'linux-ab', 'mcu-serial', 'vm']),
      artifact: z.string().max(128),
      version: z.string().max(64),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      size: z.number().int().nonnegative(),
      url: z.string().max(2048),
      manifest: z.string().max(8192),
      signature: z.string().max(512),
      rollback: z.boolean(),
    })
    .nullable(),
});

/** One-off instructions, idempotent by id: a repeated command id is acknowledged, not re-run. */
export const commandSchema = z.strictObject({
  id: z.string().min(1).max(64),
  issuedAt: timestamp,
  type: z.enum(['ping', 'report']),
  args: z.record(z.string(), z.unknown()).optional(),
});

export type Presence = z.infer<typeof presenceSchema>;
export type Inventory = z.infer<typeof inventorySchema>;
export type Health = z.infer<typeof healthSchema>;
export type DeviceEvent = z.infer<typeof deviceEventSchema>;
export type DesiredState = z.infer<typeof desiredStateSchema>;
export type Command = z.infer<typeof commandSchema>;

export const channelSchemas = {
  presence: presenceSchema,
  inventory: inventorySchema,
  health: healthSchema,
  events: deviceEventSchema,
  desired: desiredStateSchema,
  commands: commandSchema,
} as const;

export type ChannelPayload = {
  [K in keyof typeof channelSchemas]: z.infer<(typeof channelSchemas)[K]>;
};
