/** The fleet at a glance, and the server's own liveness. */
import { z } from 'zod';
import { named } from './shared.ts';

/** Counts over devices not revoked. */
export const fleetSummarySchema = named(
  'FleetSummary',
  z.object({
    total: z.number().int(),
    online: z.number().int(),
    offline: z.number().int(),
    byBoard: z
      .record(z.string(), z.number().int())
      .describe('board reported, else registered; "unknown" when neither'),
    byVersion: z
      .record(z.string(), z.number().int())
      .describe('running version; "none" when the device reports none'),
    failingHealth: z.number().int(),
    failingDevices: z
      .array(z.object({ id: z.string(), name: z.string(), reason: z.string() }))
      .describe('the first 20 by name, with the reason'),
  }),
);

export const healthzSchema = named('Healthz', z.object({ status: z.literal('ok') }));

export type FleetSummary = z.infer<typeof fleetSummarySchema>;
export type Healthz = z.infer<typeof healthzSchema>;
