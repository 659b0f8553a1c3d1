/** The audit log: every operator action, who did it, when, to what, and whether it worked. */
import { z } from 'zod';
import { named, pageLimit, timestamp } from './shared.ts';

/** Whether the action did what it was asked to. */
export const AUDIT_OUTCOMES = ['ok', 'failed'] as const;
/** How the actor was signed in: an operator token (CLI, scripts) or a dashboard session opened with one. */
export const AUDIT_CHANNELS = ['token', 'session'] as const;

/**
 * An ISO 8601 date (`2026-12-01`, UTC midnight) or a date and time with its zone (`…T14:00Z`,
 * `…+01:00`), not before the epoch.
 */
const isoTime = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()])
  .transform((text) => Date.parse(text))
  .pipe(z.number().min(0, 'a time since the epoch (1970)'));

export const listAuditQuery = z.strictObject({
  since: z
    .union([z.coerce.number().int().min(0), isoTime], {
      error:
        'ms since the epoch, or an ISO date or date-time with its zone (2026-12-01, 2026-12-01T14:00:00Z)',
    })
    .optional()
    .describe('only entries from then on: ms since the epoch, or an ISO date or date-time with its zone'),
  actor: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe('only entries by this operator token, by its name or its id'),
  limit: pageLimit(100),
});

export const auditEntrySchema = named(
  'AuditEntry',
  z.object({
    id: z.number().int().describe('increases with every entry'),
    at: timestamp.describe('when the action ended, ms since the epoch'),
    actor: z
      .string()
      .describe("the operator token's name (a dashboard session acts as the token it was opened with)"),
    actorTokenId: z.string().describe("the operator token's id"),
    via: z.enum(AUDIT_CHANNELS),
    action: z
      .string()
      .describe('what was done, `noun.verb`: device.revoke, rollout.pause, operator-token.create…'),
    target: z
      .string()
      .nullable()
      .describe('the id of what it was done to; null when a create failed before there was one'),
    outcome: z.enum(AUDIT_OUTCOMES),
    detail: z.string().nullable().describe('what was asked for, in a few words; never a secret'),
    reason: z.string().nullable().describe('why it failed: the message the caller got; null when it worked'),
  }),
);

export const auditLogSchema = named(
  'AuditLog',
  z.object({ entries: z.array(auditEntrySchema).describe('newest first'), limit: z.number().int() }),
);

export type ListAuditQuery = z.input<typeof listAuditQuery>;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];
export type AuditChannel = (typeof AUDIT_CHANNELS)[number];
export type AuditEntry = z.infer<typeof auditEntrySchema>;
export type AuditLog = z.infer<typeof auditLogSchema>;
