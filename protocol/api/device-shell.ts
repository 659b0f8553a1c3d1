/**
 * The remote shell's REST side: the sessions kept for the audit, and their transcripts. The
 * terminal itself is a WebSocket, `GET /api/v1/devices/{id}/shell` (answered 101, so not a row of
 * this table: see PROTOCOL.md).
 */
import { z } from 'zod';
import { type ApiOperation, json, text } from './operation.ts';
import { named, pageLimit, timestamp } from './shared.ts';
import { AUDIT_CHANNELS } from './audit.ts';

export const listShellSessionsQuery = z.strictObject({
  device: z.string().min(1).max(64).optional().describe("only this device's sessions, by id"),
  limit: pageLimit(100),
});

export const shellSessionSchema = named(
  'ShellSession',
  z.object({
    id: z.string(),
    deviceId: z.string(),
    actor: z.string().describe("the operator token's name (a dashboard session acts as its token)"),
    actorTokenId: z.string(),
    via: z.enum(AUDIT_CHANNELS),
    command: z
      .string()
      .nullable()
      .describe('the one command run (`shell -c`); null for an interactive shell'),
    mode: z.enum(['pty', 'pipes']).nullable().describe('how the device ran it; null when it never answered'),
    startedAt: timestamp,
    endedAt: timestamp.nullable().describe('null while the session is open'),
    endReason: z.string().nullable(),
    exitCode: z.number().int().nullable().describe("the remote shell's exit code, when it exited by itself"),
    bytesIn: z.number().int().describe('terminal bytes the operator sent'),
    bytesOut: z.number().int().describe('terminal bytes the device sent back'),
    transcript: z.boolean().describe('whether its output was kept (BOARDFLEET_SHELL_TRANSCRIPTS=on)'),
  }),
);

export const shellSessionListSchema = named(
  'ShellSessionList',
  z.object({ sessions: z.array(shellSessionSchema).describe('newest first'), limit: z.number().int() }),
);

export type ListShellSessionsQuery = z.input<typeof listShellSessionsQuery>;
export type ShellSessionRecord = z.infer<typeof shellSessionSchema>;
export type ShellSessionList = z.infer<typeof shellSessionListSchema>;

export const shellOperations = {
  listShellSessions: {
    method: 'get',
    path: '/api/v1/shell-sessions',
    summary:
      'Remote shell sessions, newest first: who opened one on which device, when, how long, the bytes each way and how it ended ' +
      '(open ones have no endedAt). Filters: device, limit',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: listShellSessionsQuery,
    response: json(shellSessionListSchema),
  },
  getShellTranscript: {
    method: 'get',
    path: '/api/v1/shell-sessions/{id}/transcript',
    summary:
      'What the shell printed in one session, as text (kept with BOARDFLEET_SHELL_TRANSCRIPTS=on, first 1 MiB); 404 when none was kept',
    tag: 'devices',
    access: 'admin',
    status: 200,
    response: text('the terminal output, escape sequences included'),
  },
} as const satisfies Record<string, ApiOperation>;
