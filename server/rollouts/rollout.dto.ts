import { z } from 'zod';

export const waveConfigSchema = z.strictObject({
  name: z.string().min(1).max(64).optional(),
  /** Explicit devices in this wave (canaries), placed before any percentage. */
  canary: z.array(z.string().min(1).max(64)).max(1000).optional(),
  /** Cumulative share of the whole target reached by the end of this wave (1, 10, 50, 100…). */
  percent: z.number().min(0).max(100).optional(),
  successThresholdPercent: z.number().min(0).max(100).default(100),
  errorThresholdPercent: z.number().min(0).max(100).default(10),
  /** Seconds an updated device must stay online and heartbeating before it counts as committed. */
  soakSeconds: z
    .number()
    .min(0)
    .max(7 * 24 * 3600)
    .default(60),
  /** Wait for an operator's approval before this wave starts. */
  requiresApproval: z.boolean().default(false),
  maxParallel: z.number().int().min(1).max(100_000).default(50),
  notifyRatePerMinute: z.number().int().min(1).max(100_000).nullable().default(null),
  deviceTimeoutSeconds: z
    .number()
    .min(1)
    .max(7 * 24 * 3600)
    .default(1800),
  retries: z.number().int().min(0).max(10).default(0),
});

export const rolloutTargetSchema = z
  .strictObject({
    deviceIds: z.array(z.string().min(1).max(64)).max(100_000).optional(),
    tags: z.array(z.string().min(1).max(64)).max(32).optional(),
    boards: z.array(z.string().min(1).max(64)).max(64).optional(),
  })
  .refine((target) => target.deviceIds || target.tags || target.boards, 'name devices, tags or boards');

export const createRolloutBody = z.strictObject({
  name: z.string().min(1).max(128).optional(),
  release: z.string().min(1).max(128),
  /** Devices match when they satisfy every kind given: one of the ids, one of the tags, one of the boards. */
  target: rolloutTargetSchema,
  waves: z.array(waveConfigSchema).min(1).max(20),
  onTrip: z.enum(['pause', 'abort']).default('pause'),
  rollbackOnAbort: z.boolean().default(false),
  /** Devices that start matching the target while the rollout runs join its last open wave. */
  dynamic: z.boolean().default(true),
});

export type WaveConfig = z.infer<typeof waveConfigSchema>;
export type RolloutTarget = z.infer<typeof rolloutTargetSchema>;
export type CreateRollout = z.infer<typeof createRolloutBody>;
export type RolloutOptions = Pick<CreateRollout, 'onTrip' | 'rollbackOnAbort' | 'dynamic'>;
