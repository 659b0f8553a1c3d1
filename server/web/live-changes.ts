import { z } from 'zod';
import { liveEvents } from '../../protocol/api/live.ts';
import { timestamp } from '../../protocol/api/shared.ts';
import type { HealthToStore } from '../telemetry/telemetry.repository.ts';

/** Device ids per health change: about 20 bytes each, so one change fits one notification. */
export const HEALTH_IDS_PER_CHANGE = 300;

/**
 * What one replica tells the others (server/cluster/change-feed.ts) so that their live streams
 * show its changes too. Presence, device events and builds carry their data; a rollout only its
 * id, its snapshot being read from the database as for a local change; health only which devices
 * reported within which receive times, the receiver reading the samples its viewers want: a
 * fleet's heartbeats are too many to send to every replica.
 */
export const liveChangeSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('presence'), data: liveEvents.presence }),
  z.object({ type: z.literal('device-event'), data: liveEvents['device-event'] }),
  z.object({ type: z.literal('build'), data: liveEvents.build }),
  z.object({ type: z.literal('rollout'), data: z.object({ rolloutId: z.string() }) }),
  z.object({
    type: z.literal('health'),
    data: z.object({
      deviceIds: z.array(z.string()).max(HEALTH_IDS_PER_CHANGE),
      from: timestamp,
      to: timestamp,
    }),
  }),
]);

export type LiveChange = z.infer<typeof liveChangeSchema>;

/** The health changes for one stored batch of samples. */
export function healthChanges(samples: readonly HealthToStore[]): LiveChange[] {
  if (samples.length === 0) return [];
  let from = Number.POSITIVE_INFINITY;
  let to = 0;
  const deviceIds = new Set<string>();
  for (const { deviceId, receivedAt } of samples) {
    deviceIds.add(deviceId);
    from = Math.min(from, receivedAt);
    to = Math.max(to, receivedAt);
  }
  const ids = [...deviceIds];
  const changes: LiveChange[] = [];
  for (let start = 0; start < ids.length; start += HEALTH_IDS_PER_CHANGE)
    changes.push({
      type: 'health',
      data: { deviceIds: ids.slice(start, start + HEALTH_IDS_PER_CHANGE), from, to },
    });
  return changes;
}
