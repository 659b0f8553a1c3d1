/** The fleet at a glance, and the server's own liveness. */
import { z } from 'zod';
import { named, timestamp } from './shared.ts';

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

/** Whether a part the server depends on works, and if not, why. */
const dependencyHealthSchema = z.object({
  state: z.enum(['up', 'down']),
  reason: z.string().nullable().describe('why it is down; null while up'),
});

/** The server's own MQTT session, through which it hears devices and sends them commands. */
const mqttSessionHealthSchema = z.object({
  state: z
    .enum(['connecting', 'connected', 'reconnecting', 'stopped'])
    .describe('reconnecting: the connection to the broker is lost and being retried'),
  since: timestamp.describe('when the session entered this state'),
});

export const healthzSchema = named(
  'Healthz',
  z.object({
    status: z
      .enum(['ok', 'degraded'])
      .describe('degraded (answered with 503) while a part the server depends on is down'),
    database: dependencyHealthSchema,
    mqtt: mqttSessionHealthSchema,
  }),
);

export type FleetSummary = z.infer<typeof fleetSummarySchema>;
export type Healthz = z.infer<typeof healthzSchema>;
export type MqttSessionHealth = z.infer<typeof mqttSessionHealthSchema>;
