/** `GET /api/v1/devices/{id}/logs`: a device's live logs, relayed from its agent as server-sent events. */
import { z } from 'zod';
import { logLineSchema } from '../device-logs.ts';
import { events, type ApiOperation } from './operation.ts';
import { named, pageLimit } from './shared.ts';

/** Seconds, minutes, hours or days back from now: `30s`, `10m`, `2h`, `1d`. */
const SINCE_DURATION = /^([1-9][0-9]{0,6})([smhd])$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `since` as a time: a duration back from `now`, or milliseconds since the epoch; null when neither. */
export function sinceTime(text: string, now: number): number | null {
  const duration = SINCE_DURATION.exec(text);
  if (duration) return Math.max(0, now - Number(duration[1]) * UNIT_MS[duration[2] as keyof typeof UNIT_MS]);
  return /^[0-9]{1,15}$/.test(text) ? Number(text) : null;
}

export const deviceLogsQuery = z.strictObject({
  app: z
    .string()
    .regex(/^\S{1,128}$/, 'an app name, without spaces')
    .optional()
    .describe(
      "only this app's lines (an app bundle's name, or a VM's); default: every workload's and the agent's",
    ),
  board: z
    .string()
    .regex(/^\S{1,128}$/, "a serial port as the device's inventory names it, without spaces")
    .optional()
    .describe(
      "the attached board's serial output on this port (as the inventory's attachedBoards names it), captured while watched; " +
        'with app, both; without, only the board',
    ),
  baud: z.coerce
    .number()
    .int()
    .min(300)
    .max(4_000_000)
    .optional()
    .describe("with board: the board's serial speed (default 115200)"),
  since: z
    .string()
    .refine(
      (text) => sinceTime(text, 0) !== null,
      'a duration such as 30s, 10m, 2h or 1d, or ms since the epoch',
    )
    .optional()
    .describe(
      'first the lines written since then: a duration back from now (30s, 10m, 2h, 1d) or ms since the epoch',
    ),
  after: z.coerce
    .number()
    .int()
    .min(-1)
    .optional()
    .describe('first the lines after this sequence number (resuming a stream: the last seq received)'),
  follow: z
    .enum(['true', 'false'])
    .optional()
    .describe('keep streaming new lines, across the device going offline and back; default false'),
  limit: pageLimit(100).describe('without since or after: the newest this many lines first (at most 1000)'),
});

export const deviceLogEvents = {
  line: named('LogLine', logLineSchema.describe('one line, with its sequence number on the device')),
  'caught-up': named(
    'LogCaughtUp',
    z.object({ through: z.number().int() }).describe('the backlog was sent: what follows is live'),
  ),
  device: named(
    'LogDevicePresence',
    z
      .object({ online: z.boolean() })
      .describe('the device went away or came back; the stream resumes without a gap'),
  ),
  error: named(
    'LogStreamError',
    z.object({ code: z.string(), message: z.string() }).describe('the stream ends after it'),
  ),
};

export const logOperations = {
  watchDeviceLogs: {
    method: 'get',
    path: '/api/v1/devices/{id}/logs',
    summary:
      "A device's logs as server-sent events (each workload's output and the agent's own, numbered per device): " +
      'line {seq, at, source, stream, text} for the backlog (after `after`, else since `since`, else the newest ' +
      '`limit`), caught-up once it is sent, then with follow=true new lines as they come, device {online} when ' +
      'the device goes away or comes back (the stream resumes without a gap or a repeat), error {code, message} ' +
      'before the stream ends (an unknown app or board: log-source-unknown). With board, the agent reads the attached ' +
      "board's serial port while the stream is open (lines from board:<port>; a flash pauses it). " +
      'Without follow the stream ends after caught-up. ' +
      'The agent streams only while someone watches. Read it with fetch (Authorization header).',
    tag: 'devices',
    access: 'viewer',
    status: 200,
    query: deviceLogsQuery,
    response: events(deviceLogEvents, 'the backlog, caught-up, then (following) live lines'),
  },
} as const satisfies Record<string, ApiOperation>;

export type DeviceLogsQuery = z.infer<typeof deviceLogsQuery>;
export type DeviceLogEvents = { [K in keyof typeof deviceLogEvents]: z.infer<(typeof deviceLogEvents)[K]> };
