/**
 * Configuration variables as they travel to a device in its desired state: the effective set
 * (fleet, then tag, then device values), and the hash the agent reports back once applied.
 */
import { z } from 'zod';
import { BoardfleetError } from './errors.ts';

/** An environment variable name (POSIX): letters, digits and underscores, not starting with a digit. */
export const CONFIG_KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
export const CONFIG_VALUE_MAX_LENGTH = 4096;

/** `BOARDFLEET_SHELL=on` opens a device to the remote shell (off by default). */
export const SHELL_ENABLED_VARIABLE = 'BOARDFLEET_SHELL';

export const desiredConfigSchema = z.strictObject({
  variables: z.record(z.string().regex(CONFIG_KEY_PATTERN), z.string().max(CONFIG_VALUE_MAX_LENGTH)),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
});
export type DesiredConfig = z.infer<typeof desiredConfigSchema>;

export function shellEnabled(variables: Readonly<Record<string, string>>): boolean {
  return variables[SHELL_ENABLED_VARIABLE]?.toLowerCase() === 'on';
}

/** Names reserved for Boardfleet's own settings: delivered to the agent, never put in an app's environment. */
export const RESERVED_PREFIX = 'BOARDFLEET_';

/** The variables an app gets in its environment: all but Boardfleet's own settings. */
export function appEnvironment(variables: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(variables).filter(([name]) => !name.startsWith(RESERVED_PREFIX)));
}

/** Refuses a name that cannot be an environment variable, in words a person can act on; the name when fine. */
export function checkConfigName(name: string): string {
  if (!CONFIG_KEY_PATTERN.test(name))
    throw new BoardfleetError(
      'invalid-config-name',
      `${name} is not a valid environment variable name: letters, digits and _, not starting with a digit (at most 128)`,
    );
  return name;
}
