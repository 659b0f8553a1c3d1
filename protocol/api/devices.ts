/**
 * Devices in the REST API: registration, listing and filtering, details, name and tags,
 * revocation and deletion, one-off commands, and the history of what each device reported.
 */
import { z } from 'zod';
import { commandSchema, deviceEventSchema, healthSchema, inventorySchema } from '../schemas.ts';
import { DeploymentState, deploymentStateSchema, rolloutStateSchema } from './rollouts.ts';
import { named, pageFields, pageLimit, pageOffset, timestamp } from './shared.ts';

/** A device tag, as devices are tagged and as configuration variables are set for a tag. */
export const deviceTag = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'tags are 1-64 letters, digits, . _ : -');
const deviceName = z.string().min(1).max(128);
const allowDuplicate = z
  .boolean()
  .optional()
  .describe(
    'accept a name another (not revoked) device already has; without it such a name is refused with 409',
  );

/** The fields a device is registered with, by an operator or by an agent provisioning itself. */
export const newDeviceFields = {
  name: deviceName,
  board: z.string().min(1).max(64).optional(),
  tags: z.array(deviceTag).max(32).optional(),
};

export const createDeviceBody = named('CreateDevice', z.strictObject({ ...newDeviceFields, allowDuplicate }));

export const updateDeviceBody = named(
  'UpdateDevice',
  z
    .strictObject({
      name: deviceName.optional().describe('a new name (rename)'),
      tags: z.array(deviceTag).max(32).optional().describe('replaces every tag'),
      allowDuplicate,
    })
    .refine((body) => body.name !== undefined || body.tags !== undefined, 'give a name, tags or both'),
);

export const listDevicesQuery = z.strictObject({
  tag: deviceTag.optional(),
  board: z.string().max(64).optional().describe('reported board, else the one registered'),
  online: z
    .enum(['true', 'false'])
    .transform((value) => value === 'true')
    .optional(),
  version: z.string().min(1).max(64).optional().describe('the running version'),
  q: z.string().trim().max(128).optional().describe('a case-insensitive part of the name or id'),
  sort: z.enum(['name', 'lastSeen']).optional().describe('default: registration order'),
  limit: pageLimit(100),
  offset: pageOffset,
});

/** History reads: `from`/`to` default to the last day before now. */
export const timeRangeQuery = z.strictObject({
  from: z.coerce.number().int().min(0).optional().describe('ms since the epoch; default a day before `to`'),
  to: z.coerce.number().int().min(0).optional().describe('ms since the epoch; default now'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1_000),
});

export const sendCommandBody = named(
  'SendCommand',
  z.strictObject({
    type: commandSchema.shape.type,
    args: z.record(z.string(), z.unknown()).optional(),
  }),
);

/** The command as sent to the device (over MQTT), with its id and time. */
export const sentCommandSchema = named('Command', commandSchema);

export const deviceSchema = named(
  'Device',
  z.object({
    id: z.string(),
    name: z.string(),
    board: z.string().nullable(),
    tags: z.array(z.string()),
    createdAt: timestamp,
    revokedAt: timestamp.nullable(),
    online: z.boolean(),
    presenceChangedAt: timestamp.nullable(),
    lastSeenAt: timestamp.nullable(),
    inventory: inventorySchema.nullable(),
    runningVersion: z.string().nullable().describe("the version in the inventory's active slot"),
    desiredVersion: z
      .string()
      .nullable()
      .describe(
        'the version the server wants the device to run (after a rollback, the one it was sent back to); null when no rollout has sent it one',
      ),
    healthProblem: z
      .string()
      .nullable()
      .describe(
        'why the latest heartbeat or an attached board looks unhealthy ("disk 97% full"); null when fine',
      ),
  }),
);

/** A new device: its secret is in this answer only, the server keeps a slow hash. */
export const createdDeviceSchema = named(
  'CreatedDevice',
  z.object({ device: deviceSchema, secret: z.string() }),
);

export const devicePageSchema = named(
  'DevicePage',
  z.object({
    devices: z.array(deviceSchema),
    total: z.number().int().describe('how many devices match the filters in all'),
    ...pageFields,
  }),
);

export const storedHealthSchema = named('StoredHealth', healthSchema.extend({ receivedAt: timestamp }));

export const deviceDetailsSchema = named(
  'DeviceDetails',
  deviceSchema.extend({
    latestHealth: storedHealthSchema.nullable(),
    configApplied: z
      .boolean()
      .describe(
        'whether the device reported the hash of its effective configuration variables (GET /api/v1/devices/{id}/config has them)',
      ),
  }),
);

/** One rollout's deployment to a device. */
export const deviceDeploymentSchema = named(
  'DeviceDeployment',
  z.object({
    rolloutId: z.string(),
    rolloutName: z.string(),
    rolloutState: rolloutStateSchema,
    release: z.string(),
    version: z.string().nullable().describe('the version the device was sent; null until it was notified'),
    deploymentId: z.string(),
    state: deploymentStateSchema,
    outcome: z
      .enum([DeploymentState.Committed, DeploymentState.Failed, DeploymentState.RolledBack])
      .nullable()
      .describe('how the deployment ended; null while it is under way'),
    reason: z.string().nullable(),
    attempt: z.number().int(),
    createdAt: timestamp,
    notifiedAt: timestamp.nullable(),
    stateChangedAt: timestamp,
  }),
);

export const deviceDeploymentsSchema = named(
  'DeviceDeployments',
  z.object({
    deviceId: z.string(),
    deployments: z.array(deviceDeploymentSchema).describe('newest first'),
  }),
);

const historyRange = { deviceId: z.string(), from: timestamp, to: timestamp };

export const healthHistorySchema = named(
  'HealthHistory',
  z.object({ ...historyRange, samples: z.array(storedHealthSchema) }),
);

export const presenceChangeSchema = named(
  'PresenceChange',
  z.object({
    at: timestamp,
    state: z.enum(['online', 'offline']),
    reason: z.string(),
  }),
);

export const presenceHistorySchema = named(
  'PresenceHistory',
  z.object({ ...historyRange, changes: z.array(presenceChangeSchema) }),
);

export const storedDeviceEventSchema = named(
  'StoredDeviceEvent',
  z.object({
    id: deviceEventSchema.shape.id,
    at: timestamp,
    receivedAt: timestamp,
    type: z.string(),
    deploymentId: z.string().nullable(),
    message: z.string().nullable(),
    data: z.record(z.string(), z.unknown()).nullable(),
  }),
);

export const deviceEventHistorySchema = named(
  'DeviceEventHistory',
  z.object({
    ...historyRange,
    events: z.array(storedDeviceEventSchema),
  }),
);

export type CreateDevice = z.infer<typeof createDeviceBody>;
export type UpdateDevice = z.infer<typeof updateDeviceBody>;
export type ListDevicesQuery = z.input<typeof listDevicesQuery>;
export type TimeRangeQuery = z.input<typeof timeRangeQuery>;
export type SendCommand = z.infer<typeof sendCommandBody>;
export type SentCommand = z.infer<typeof sentCommandSchema>;
export type Device = z.infer<typeof deviceSchema>;
export type CreatedDevice = z.infer<typeof createdDeviceSchema>;
export type DevicePage = z.infer<typeof devicePageSchema>;
export type StoredHealth = z.infer<typeof storedHealthSchema>;
export type DeviceDetails = z.infer<typeof deviceDetailsSchema>;
export type DeviceDeployment = z.infer<typeof deviceDeploymentSchema>;
export type DeviceDeployments = z.infer<typeof deviceDeploymentsSchema>;
export type HealthHistory = z.infer<typeof healthHistorySchema>;
export type PresenceChange = z.infer<typeof presenceChangeSchema>;
export type PresenceHistory = z.infer<typeof presenceHistorySchema>;
export type StoredDeviceEvent = z.infer<typeof storedDeviceEventSchema>;
export type DeviceEventHistory = z.infer<typeof deviceEventHistorySchema>;
