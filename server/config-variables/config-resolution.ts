import type { ConfigScope, ConfigSource } from '../../protocol/api/config-variables.ts';

/** A variable as stored at one scope. */
export interface StoredVariable {
  scope: ConfigScope;
  /** '' for the fleet, the tag, or the device id. */
  target: string;
  name: string;
  value: string;
  secret: boolean;
  updatedAt: number;
  updatedBy: string;
}

/** One variable of a device's effective set, with the scope whose value won. */
export interface ResolvedVariable {
  name: string;
  value: string;
  secret: boolean;
  source: ConfigSource;
}

/** The variables that may apply to some devices, as one bulk read returns them. */
export interface VariableLayers {
  fleet: readonly StoredVariable[];
  byTag: ReadonlyMap<string, readonly StoredVariable[]>;
  byDevice: ReadonlyMap<string, readonly StoredVariable[]>;
}

/**
 * A device's effective variables, balena's order: the fleet's, overridden by each of its tags'
 * in alphabetical order of the tag (a later tag wins over an earlier one), overridden by the
 * device's own. Sorted by name.
 */
export function resolveVariables(
  layers: VariableLayers,
  deviceId: string,
  tags: readonly string[],
): ResolvedVariable[] {
  const effective = new Map<string, ResolvedVariable>();
  const apply = (variables: readonly StoredVariable[] | undefined, source: ConfigSource) => {
    for (const variable of variables ?? [])
      effective.set(variable.name, {
        name: variable.name,
        value: variable.value,
        secret: variable.secret,
        source,
      });
  };
  apply(layers.fleet, 'fleet');
  for (const tag of [...new Set(tags)].sort()) apply(layers.byTag.get(tag), `tag:${tag}`);
  apply(layers.byDevice.get(deviceId), 'device');
  return [...effective.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The plain name → value map a device receives (secrets included). */
export function variableValues(resolved: readonly ResolvedVariable[]): Record<string, string> {
  return Object.fromEntries(resolved.map((variable) => [variable.name, variable.value]));
}
