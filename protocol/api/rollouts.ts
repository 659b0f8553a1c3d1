/** Staged rollouts: a release sent to a target in waves, with thresholds, soak, approvals and actions. */
import { z } from 'zod';
import { named, timestamp } from './shared.ts';

const deviceId = z.string().min(1).max(64);

export const waveConfigSchema = named(
  'WaveConfig',
  z.strictObject({
    name: z.string().min(1).max(64).optional(),
    canary: z
      .array(deviceId)
      .max(1000)
      .optional()
      .describe('explicit devices in this wave (canaries), placed before any percentage'),
    percent: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe('cumulative share of the whole target reached by the end of this wave (1, 10, 50, 100…)'),
    successThresholdPercent: z.number().min(0).max(100).default(100),
    errorThresholdPercent: z.number().min(0).max(100).default(10),
    soakSeconds: z
      .number()
      .min(0)
      .max(7 * 24 * 3600)
      .default(60)
      .describe('seconds an updated device must stay online and heartbeating before it counts as committed'),
    requiresApproval: z
      .boolean()
      .default(false)
      .describe("wait for an operator's approval before this wave starts"),
    maxParallel: z.number().int().min(1).max(100_000).default(50),
    notifyRatePerMinute: z.number().int().min(1).max(100_000).nullable().default(null),
    deviceTimeoutSeconds: z
      .number()
      .min(1)
      .max(7 * 24 * 3600)
      .default(1800),
    retries: z.number().int().min(0).max(10).default(0),
  }),
);

/** Devices match when they satisfy every kind given: one of the ids, one of the tags, one of the boards. */
export const rolloutTargetSchema = named(
  'RolloutTarget',
  z
    .strictObject({
      deviceIds: z.array(deviceId).min(1).max(100_000).optional(),
      tags: z.array(z.string().min(1).max(64)).min(1).max(32).optional(),
      boards: z.array(z.string().min(1).max(64)).min(1).max(64).optional(),
    })
    .refine((target) => target.deviceIds || target.tags || target.boards, 'name devices, tags or boards'),
);

export const createRolloutBody = named(
  'CreateRollout',
  z.strictObject({
    name: z.string().min(1).max(128).optional(),
    release: z.string().min(1).max(128).describe('release id or name'),
    target: rolloutTargetSchema,
    waves: z.array(waveConfigSchema).min(1).max(20),
    onTrip: z.enum(['pause', 'abort']).default('pause'),
    rollbackOnAbort: z.boolean().default(false),
    dynamic: z
      .boolean()
      .default(true)
      .describe('devices that start matching the target while the rollout runs join its last open wave'),
  }),
);

/**
 * The states of a rollout, a wave and a device's deployment, named for the rollout engine's
 * transition tables (server/rollouts/rollout-state-machine.ts); the database holds only these.
 */
export const RolloutState = {
  Running: 'running',
  Paused: 'paused',
  Completed: 'completed',
  Aborted: 'aborted',
} as const;
export const WaveState = {
  Pending: 'pending',
  Running: 'running',
  AwaitingApproval: 'awaiting-approval',
  Succeeded: 'succeeded',
  Tripped: 'tripped',
  /** The rollout was aborted before this wave finished: it never will. */
  Aborted: 'aborted',
} as const;
export const DeploymentState = {
  Queued: 'queued',
  Notified: 'notified',
  Downloading: 'downloading',
  Installing: 'installing',
  AwaitingReboot: 'awaiting-reboot',
  Soaking: 'soaking',
  /** Committed for the rollout: the device committed on its side and then passed the server's soak. */
  Committed: 'committed',
  Failed: 'failed',
  RolledBack: 'rolled-back',
} as const;
/** What an operator can do to a rollout: `POST /api/v1/rollouts/{id}/{action}`. */
export const ROLLOUT_ACTIONS = ['pause', 'resume', 'abort', 'approve'] as const;

export const rolloutStateSchema = z.enum(RolloutState);
export const waveStateSchema = z.enum(WaveState);
export const deploymentStateSchema = z.enum(DeploymentState);
export const rolloutActionSchema = z.enum(ROLLOUT_ACTIONS);

export const rolloutSchema = named(
  'Rollout',
  z.object({
    id: z.string(),
    name: z.string(),
    releaseId: z.string(),
    target: rolloutTargetSchema,
    options: createRolloutBody.pick({ onTrip: true, rollbackOnAbort: true, dynamic: true }),
    state: rolloutStateSchema,
    reason: z.string().nullable().describe('why it paused, aborted or completed'),
    createdAt: timestamp,
    updatedAt: timestamp,
  }),
);

export const waveCountsSchema = named(
  'WaveCounts',
  z.object({
    size: z.number().int(),
    committed: z.number().int(),
    failed: z.number().int().describe('every failed device, rolled back or not'),
    inProgress: z.number().int(),
    queued: z.number().int(),
    rolledBack: z
      .number()
      .int()
      .describe('the failed devices that were rolled back (counted in failed as well)'),
  }),
);

/** A rollout in the list, with its devices counted over every wave: the list's progress column. */
export const rolloutSummarySchema = named(
  'RolloutSummary',
  rolloutSchema.extend({ counts: waveCountsSchema.describe('every wave together') }),
);

export const rolloutListSchema = named(
  'RolloutList',
  z.object({ rollouts: z.array(rolloutSummarySchema).describe('newest first') }),
);

export const rolloutWaveSchema = named(
  'RolloutWave',
  z.object({
    index: z.number().int(),
    name: z.string(),
    config: waveConfigSchema,
    state: waveStateSchema,
    startedAt: timestamp.nullable(),
    finishedAt: timestamp.nullable(),
    counts: waveCountsSchema,
  }),
);

export const rolloutDeviceSchema = named(
  'RolloutDevice',
  z.object({
    deviceId: z.string(),
    waveIndex: z.number().int(),
    deploymentId: z.string(),
    state: deploymentStateSchema,
    attempt: z.number().int(),
    artifactId: z.string().nullable(),
    partArtifactIds: z
      .array(z.string())
      .describe(
        "a composite release's other artifacts this device got (its attached boards' firmware); empty for one artifact",
      ),
    progress: z.number().nullable(),
    transferMode: z
      .enum(['full', 'delta'])
      .nullable()
      .describe('how the artifact reached the device; null until its download is done'),
    transferBytes: z.number().int().nullable().describe('bytes the device fetched for it'),
    artifactBytes: z.number().int().nullable().describe("the artifact's size, what a full download fetches"),
    reason: z.string().nullable(),
    notifiedAt: timestamp.nullable(),
    soakUntil: timestamp.nullable(),
    stateChangedAt: timestamp,
  }),
);

/** A device in the live view: its deployment, with the device's name so people need not read ids. */
export const rolloutStatusDeviceSchema = named(
  'RolloutStatusDevice',
  rolloutDeviceSchema.extend({
    deviceName: z.string().nullable().describe('null once the device has been deleted'),
  }),
);

/** What the rollout's downloads cost, over the devices that finished one. */
export const rolloutTransferSchema = named(
  'RolloutTransfer',
  z.object({
    deltaDevices: z.number().int(),
    fullDevices: z.number().int(),
    bytes: z.number().int().describe('fetched by every device together'),
    artifactBytes: z.number().int().describe('what the same devices would have fetched with full downloads'),
  }),
);

/** The live view: the rollout, each wave with its counts, each device with state, progress and reason. */
export const rolloutStatusSchema = named(
  'RolloutStatus',
  rolloutSchema.extend({
    waves: z.array(rolloutWaveSchema),
    devices: z.array(rolloutStatusDeviceSchema),
    transfer: rolloutTransferSchema,
    log: z.array(z.object({ at: timestamp, message: z.string() })),
  }),
);

/** How the target would split into waves, without creating anything. */
export const rolloutPreviewSchema = named(
  'RolloutPreview',
  z.object({
    release: z.string(),
    targetDevices: z.number().int(),
    waves: z.array(z.object({ name: z.string(), devices: z.array(z.string()) })),
    warnings: z
      .array(z.string())
      .describe('what an operator should know before starting: no device matches, or none is online'),
  }),
);

/** A rollout's state and per-wave counts, as the live stream sends it. */
export const rolloutProgressSchema = named(
  'RolloutProgress',
  z.object({
    rolloutId: z.string(),
    state: rolloutStateSchema,
    reason: z.string().nullable(),
    waves: z.array(rolloutWaveSchema.pick({ index: true, name: true, state: true, counts: true })),
  }),
);

export const rolloutActionParams = z.strictObject({ id: z.string(), action: rolloutActionSchema });

export type WaveConfig = z.infer<typeof waveConfigSchema>;
export type WaveConfigInput = z.input<typeof waveConfigSchema>;
export type RolloutTarget = z.infer<typeof rolloutTargetSchema>;
export type CreateRollout = z.infer<typeof createRolloutBody>;
export type CreateRolloutInput = z.input<typeof createRolloutBody>;
export type RolloutOptions = Pick<CreateRollout, 'onTrip' | 'rollbackOnAbort' | 'dynamic'>;
export type RolloutState = z.infer<typeof rolloutStateSchema>;
export type WaveState = z.infer<typeof waveStateSchema>;
export type DeploymentState = z.infer<typeof deploymentStateSchema>;
export type RolloutAction = z.infer<typeof rolloutActionSchema>;
export type Rollout = z.infer<typeof rolloutSchema>;
export type RolloutSummary = z.infer<typeof rolloutSummarySchema>;
export type RolloutList = z.infer<typeof rolloutListSchema>;
export type WaveCounts = z.infer<typeof waveCountsSchema>;
export type RolloutWave = z.infer<typeof rolloutWaveSchema>;
export type RolloutDevice = z.infer<typeof rolloutDeviceSchema>;
export type RolloutStatusDevice = z.infer<typeof rolloutStatusDeviceSchema>;
export type RolloutStatus = z.infer<typeof rolloutStatusSchema>;
export type RolloutTransfer = z.infer<typeof rolloutTransferSchema>;
export type RolloutPreview = z.infer<typeof rolloutPreviewSchema>;
export type RolloutProgress = z.infer<typeof rolloutProgressSchema>;
