/**
 * The hash of a set of configuration variables: what the server puts in a desired state and the
 * agent reports once it applied them. Apart from device-config.ts, whose schemas the dashboard's
 * types reach, because it needs node:crypto.
 */
import { createHash } from 'node:crypto';
import type { DesiredConfig } from './device-config.ts';

/** The hash of a set of variables, independent of their order: what the agent reports once applied. */
export function configHash(variables: Readonly<Record<string, string>>): string {
  const sorted = Object.keys(variables)
    .sort()
    .map((key) => [key, variables[key]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex');
}

export function desiredConfig(variables: Readonly<Record<string, string>>): DesiredConfig {
  return { variables: { ...variables }, hash: configHash(variables) };
}
