/**
 * The remote shell's tunnel over the device's own topics (server → device `shell-input`, device →
 * server `shell-output`): the device connects out, nothing listens on it. Terminal bytes travel
 * base64-encoded; `seq` numbers each side's messages of a session, so a QoS 1 redelivery is
 * dropped rather than typed or printed twice.
 */
import { z } from 'zod';

/** Terminal bytes in one message, before base64. */
export const SHELL_CHUNK_BYTES = 32 * 1024;
/** Sessions one device runs at once; the next `open` is refused. */
export const SHELL_MAX_SESSIONS_PER_DEVICE = 4;
/**
 * An `open` older than this is dropped by the agent: a persistent MQTT session redelivers it after
 * a reconnect, long after the operator who asked gave up.
 */
export const SHELL_OPEN_MAX_AGE_MS = 30_000;
/** A command run with `-c` is at most this long. */
export const SHELL_COMMAND_MAX_LENGTH = 4096;

const sessionId = z.string().min(1).max(64);
const seq = z.number().int().nonnegative();
/** At most 32 KiB of terminal bytes a message, base64-encoded. */
const terminalBytes = z
  .string()
  .max(44 * 1024)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/);
const columns = z.number().int().min(1).max(1000);
const rows = z.number().int().min(1).max(1000);

export const shellInputSchema = z.strictObject({
  session: sessionId,
  seq,
  type: z.enum(['open', 'data', 'resize', 'close']),
  data: terminalBytes.optional(),
  cols: columns.optional(),
  rows: rows.optional(),
  /** The device ends the session after this long without input or output. */
  idleSeconds: z.number().int().positive().max(86_400).optional(),
  /** On `open`: run this one command (`sh -c`, no terminal) instead of an interactive shell. */
  command: z.string().min(1).max(SHELL_COMMAND_MAX_LENGTH).optional(),
  at: z.number().int().nonnegative(),
});

export const shellOutputSchema = z.strictObject({
  session: sessionId,
  seq,
  type: z.enum(['opened', 'data', 'exit', 'refused']),
  data: terminalBytes.optional(),
  /** On `opened`: a pseudo-terminal (`script`), or plain pipes where the device has no pty tool. */
  mode: z.enum(['pty', 'pipes']).optional(),
  /** The shell's exit code on `exit` (null when a signal ended it). */
  code: z.number().int().nullable().optional(),
  /** Why a session was refused or ended, in words. */
  reason: z.string().max(512).optional(),
  at: z.number().int().nonnegative(),
});

export type ShellInput = z.infer<typeof shellInputSchema>;
export type ShellOutput = z.infer<typeof shellOutputSchema>;
export type ShellMode = NonNullable<ShellOutput['mode']>;

/**
 * The WebSocket tunnel (`GET /api/v1/devices/{id}/shell`, see PROTOCOL.md): binary frames are
 * terminal bytes both ways, text frames these JSON control messages.
 */
export const shellClientControlSchema = z.strictObject({ type: z.literal('resize'), cols: columns, rows });

export type ShellServerControl =
  | { type: 'opened'; session: string; mode: ShellMode }
  /** `code` is the remote shell's exit code; null when it ended otherwise (`reason` says how). */
  | { type: 'exit'; code: number | null; reason: string };

export type ShellClientControl = z.infer<typeof shellClientControlSchema>;

export const shellTunnelPath = (deviceId: string) => `/api/v1/devices/${encodeURIComponent(deviceId)}/shell`;
