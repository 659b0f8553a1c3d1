/** How long a token lives, as operators write it: `30d`, `12h`, `90m`. */
import { z } from 'zod';

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^([1-9][0-9]{0,5})([mhd])$/;
/** Ten years: anything longer is a token that never expires, which leaving the expiry out already says. */
const MAX_DURATION_MS = 3650 * UNIT_MS.d;

/** `30d`, `12h` or `90m` in milliseconds; null when the text is not such a duration or too long. */
export function parseDuration(text: string): number | null {
  const match = DURATION.exec(text.trim());
  if (!match) return null;
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  return ms <= MAX_DURATION_MS ? ms : null;
}

/** The `expiresIn` field of a token to create: absent for a token that does not expire. */
export const expiresInField = z
  .string()
  .regex(DURATION, 'a duration such as 30d, 12h or 90m')
  .refine((text) => parseDuration(text) !== null, 'at most 3650d')
  .describe('how long the token lives: minutes, hours or days, e.g. 90m, 12h, 30d (at most 3650d)')
  .optional();
