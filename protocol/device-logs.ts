/**
 * Live logs (device → server on `logs`, server → device on `log-watch`). The agent keeps every
 * workload's output in a ring on disk, numbered by one sequence per device that survives agent
 * restarts; it streams only while a watch is open, and a watch names the sequence to resume after,
 * so a reconnect neither skips nor repeats a line. A watch is a lease the server renews while
 * someone follows: a server that goes away stops the stream by not renewing it.
 */
import { z } from 'zod';

/** At most this many lines in one `logs` message (and well under the 64 KiB payload limit). */
export const LOG_BATCH_MAX_LINES = 256;
/** A longer line is cut here. */
export const LOG_LINE_MAX_CHARS = 4096;
/** An attached board's serial output is read at this speed unless the watch names another. */
export const DEFAULT_BOARD_BAUD = 115_200;

const timestamp = z.number().int().nonnegative().describe('milliseconds since the Unix epoch');

/** Where a line came from: `agent`, `app:<name>`, `vm:<name>` or `board:<port>`. */
export const logSourceSchema = z.string().regex(/^(agent|(app|vm|board):[^\s]{1,128})$/);

export const logLineSchema = z.strictObject({
  seq: z.number().int().nonnegative(),
  at: timestamp,
  source: logSourceSchema,
  stream: z.enum(['stdout', 'stderr']),
  text: z.string().max(LOG_LINE_MAX_CHARS),
});

/** Server → device: open (or renew) a watch, or stop it. */
export const logWatchSchema = z.strictObject({
  watch: z.string().min(1).max(64),
  action: z.enum(['start', 'stop']),
  /** Only these sources; absent: every workload's and the agent's (an attached board's only when named). */
  sources: z.array(logSourceSchema).max(32).optional(),
  /** Send the lines after this sequence number first (a resume); absent: start from `sinceAt` or now. */
  afterSeq: z.number().int().min(-1).optional(),
  /** Send the lines since this time first, when `afterSeq` is absent. */
  sinceAt: timestamp.optional(),
  /** Send the newest this many lines first, when neither `afterSeq` nor `sinceAt` is given. */
  tail: z.number().int().min(1).max(10_000).optional(),
  /**
   * The serial speed for a `board:<port>` source (default 115200, a board's usual monitor speed):
   * the agent reads the port at this rate while a watch names it.
   */
  baud: z.number().int().min(300).max(4_000_000).optional(),
  /** Keep streaming new lines after the backlog; false: send the backlog and end the watch. */
  follow: z.boolean(),
  /** The agent stops streaming at this time unless the watch is renewed. */
  leaseUntil: timestamp,
  issuedAt: timestamp,
});

/** Device → server: lines for one watch, in sequence order; `end` closes it (with `error` when refused). */
export const logBatchSchema = z.strictObject({
  watch: z.string().min(1).max(64),
  lines: z.array(logLineSchema).max(LOG_BATCH_MAX_LINES),
  /**
   * Every line up to this sequence number has been considered (those the watch's sources do not
   * name are skipped): a resume starts after it, not after the last line sent.
   */
  through: z.number().int().min(-1).optional(),
  /** The backlog has been sent: what follows is live. */
  caughtUp: z.boolean().optional(),
  end: z.boolean().optional(),
  error: z.string().max(512).optional(),
  /** The error's code (see protocol/errors.ts): `log-source-unknown` for a source the device does not have. */
  errorCode: z
    .string()
    .regex(/^[a-z][a-z-]{0,63}$/)
    .optional(),
});

export type LogLine = z.infer<typeof logLineSchema>;
export type LogWatch = z.infer<typeof logWatchSchema>;
export type LogBatch = z.infer<typeof logBatchSchema>;
export type LogSource = z.infer<typeof logSourceSchema>;
