/** `GET /api/v1/live`: the dashboard's stream of changes, as server-sent events. */
import { z } from 'zod';
import { deviceEventSchema } from '../schemas.ts';
import { buildJobSchema } from './builds.ts';
import { storedHealthSchema } from './devices.ts';
import { rolloutProgressSchema } from './rollouts.ts';
import { named, timestamp } from './shared.ts';

export const liveQuery = z.strictObject({
  health: z
    .string()
    .min(1)
    .max(64)
    .optional()
    .describe('"none" for no health events, a device id for that device\'s only; default: every device\'s'),
});

/** Each event's `data` by event name; every event also has an increasing id. */
export const liveEvents = {
  hello: named(
    'LiveHello',
    z.object({ serverTime: timestamp }).describe('sent first on every (re)connect: read snapshots again'),
  ),
  presence: named('LivePresence', z.object({ deviceId: z.string(), online: z.boolean() })),
  health: named('LiveHealth', z.object({ deviceId: z.string(), sample: storedHealthSchema })),
  'device-event': named('LiveDeviceEvent', z.object({ deviceId: z.string(), event: deviceEventSchema })),
  /** At most 4 a second per rollout. */
  rollout: rolloutProgressSchema,
  build: named('LiveBuild', z.object({ job: buildJobSchema })),
};

export type LiveQuery = z.infer<typeof liveQuery>;
export type LiveEventType = keyof typeof liveEvents;
export type LiveEvents = { [K in LiveEventType]: z.infer<(typeof liveEvents)[K]> };
