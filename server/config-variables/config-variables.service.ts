import {
  type ConfigScope,
  type ConfigVariable,
  type ConfigVariableQuery,
  type DeviceConfig,
  type SetConfigVariable,
} from '../../protocol/api/config-variables.ts';
import { deviceTag } from '../../protocol/api/devices.ts';
import { checkConfigName, type DesiredConfig } from '../../protocol/device-config.ts';
import { configHash, desiredConfig } from '../../protocol/device-config-hash.ts';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { Clock } from '../common/clock.ts';
import { invalidRequest, notFound } from '../common/errors.ts';
import type { Database } from '../db/database.ts';
import type { DeviceRecord, DeviceRepository } from '../devices/device.repository.ts';
import {
  type ResolvedVariable,
  resolveVariables,
  type StoredVariable,
  variableValues,
} from './config-resolution.ts';
import { ConfigVariableRepository } from './config-variable.repository.ts';

/** Variables one scope and target may hold: a device's set travels in every desired state it gets. */
export const MAX_VARIABLES_PER_TARGET = 100;

/** Sends the devices whose effective set changed a new desired state (the rollout engine). */
export type ConfigReissue = (deviceIds: readonly string[]) => Promise<number>;

/** The variable as the API shows it: a secret's value never leaves the server but in a desired state. */
function shown(variable: StoredVariable): ConfigVariable {
  return {
    name: variable.name,
    scope: variable.scope,
    target: variable.scope === 'fleet' ? null : variable.target,
    ...(variable.secret ? {} : { value: variable.value }),
    secret: variable.secret,
    updatedAt: variable.updatedAt,
    updatedBy: variable.updatedBy,
  };
}

/**
 * Configuration variables: fleet, tag and device values, each device's effective set (see
 * `resolveVariables`), and the new desired states a change calls for. Also what the rollout
 * engine asks for the config of the desired states it writes.
 */
export class ConfigVariablesService {
  constructor(
    private readonly variables: ConfigVariableRepository,
    private readonly devices: DeviceRepository,
    private readonly clock: Clock,
    private readonly reissue: ConfigReissue,
  ) {}

  async list(query: ConfigVariableQuery): Promise<ConfigVariable[]> {
    const target = query.scope
      ? await this.checkTarget(query.scope, query.target, { mustExist: false })
      : undefined;
    if (!query.scope && query.target !== undefined) throw invalidRequest('give a scope with the target');
    return (await this.variables.list({ scope: query.scope, target })).map(shown);
  }

  /** Sets a variable and sends the devices it changes their new set; answers without the value when secret. */
  async set(name: string, body: SetConfigVariable, by: string): Promise<ConfigVariable> {
    checkConfigName(name);
    if (body.value.includes('\u0000'))
      throw invalidRequest(`${name}: a value cannot hold a NUL character (environment variables cannot)`);
    const target = await this.checkTarget(body.scope, body.target, { mustExist: true });
    const existing = await this.variables.get(body.scope, target, name);
    if (!existing && (await this.variables.count(body.scope, target)) >= MAX_VARIABLES_PER_TARGET)
      throw new BoardfleetError(
        'conflict',
        `${describeScope(body.scope, target)} has ${MAX_VARIABLES_PER_TARGET} variables already, the most one scope holds`,
      );
    const variable: StoredVariable = {
      scope: body.scope,
      target,
      name,
      value: body.value,
      secret: body.secret ?? false,
      updatedAt: this.clock.now(),
      updatedBy: by,
    };
    await this.variables.put(variable);
    await this.reissue(await this.variables.devicesReachedBy(body.scope, target));
    return shown(variable);
  }

  async unset(name: string, query: ConfigVariableQuery): Promise<ConfigVariable> {
    checkConfigName(name);
    const scope = query.scope ?? 'fleet';
    const target = await this.checkTarget(scope, query.target, { mustExist: false });
    const existing = await this.variables.get(scope, target, name);
    if (!existing) throw notFound(`variable ${name} at ${describeScope(scope, target)}`);
    await this.variables.delete(scope, target, name);
    await this.reissue(await this.variables.devicesReachedBy(scope, target));
    return shown(existing);
  }

  /** The device's effective variables, secrets included (for the server's own checks, such as the shell's). */
  async effectiveVariables(deviceId: string): Promise<Record<string, string>> {
    if (!(await this.devices.get(deviceId))) throw notFound(`device ${deviceId}`);
    return variableValues((await this.resolve([deviceId])).get(deviceId) ?? []);
  }

  /** The device's effective set as the API shows it, and whether the device applied it. */
  async deviceConfig(deviceId: string): Promise<DeviceConfig> {
    const device = await this.devices.get(deviceId);
    if (!device) throw notFound(`device ${deviceId}`);
    const resolved = (await this.resolve([deviceId])).get(deviceId) ?? [];
    const hash = configHash(variableValues(resolved));
    const reportedHash = device.inventory?.configHash ?? null;
    return {
      deviceId,
      variables: resolved.map((variable) => ({
        name: variable.name,
        ...(variable.secret ? {} : { value: variable.value }),
        secret: variable.secret,
        source: variable.source,
      })),
      hash,
      reportedHash,
      applied: reportedHash === hash,
    };
  }

  /** Whether the device reported the hash of its effective set. */
  async configApplied(device: DeviceRecord): Promise<boolean> {
    const reported = device.inventory?.configHash;
    if (!reported) return false;
    const resolved = (await this.resolve([device.id])).get(device.id) ?? [];
    return reported === configHash(variableValues(resolved));
  }

  /**
   * The config each device's next desired state carries, in a few queries for any number of
   * devices; devices with no variable are left out (their desired state carries none).
   */
  async desiredConfigs(deviceIds: readonly string[]): Promise<Map<string, DesiredConfig>> {
    const configs = new Map<string, DesiredConfig>();
    for (const [deviceId, resolved] of await this.resolve(deviceIds))
      if (resolved.length > 0) configs.set(deviceId, desiredConfig(variableValues(resolved)));
    return configs;
  }

  /** Sends devices whose tags changed, or that were just registered, the set they now have. */
  async devicesChanged(deviceIds: readonly string[]): Promise<void> {
    await this.reissue(deviceIds);
  }

  /** Forgets a deleted device's own variables. */
  async deviceDeleted(deviceId: string): Promise<void> {
    await this.variables.deleteDevice(deviceId);
  }

  private async resolve(deviceIds: readonly string[]): Promise<Map<string, ResolvedVariable[]>> {
    if (deviceIds.length === 0) return new Map();
    const tags = await this.variables.tagsOf(deviceIds);
    const layers = await this.variables.layersFor(deviceIds, new Set([...tags.values()].flat()));
    return new Map(deviceIds.map((id) => [id, resolveVariables(layers, id, tags.get(id) ?? [])]));
  }

  /** The stored target of a scope: '' for the fleet, a valid tag, or a device id (registered, when setting). */
  private async checkTarget(
    scope: ConfigScope,
    target: string | undefined,
    { mustExist }: { mustExist: boolean },
  ): Promise<string> {
    if (scope === 'fleet') {
      if (target) throw invalidRequest(`the fleet scope takes no target (got ${target})`);
      return '';
    }
    if (!target)
      throw invalidRequest(`the ${scope} scope needs a target: the ${scope === 'tag' ? 'tag' : 'device id'}`);
    if (scope === 'tag') {
      const parsed = deviceTag.safeParse(target);
      if (!parsed.success) throw invalidRequest(`${target} is not a tag: ${parsed.error.issues[0]?.message}`);
    } else if (mustExist && !(await this.devices.get(target))) throw notFound(`device ${target}`);
    return target;
  }
}

function describeScope(scope: ConfigScope, target: string): string {
  return scope === 'fleet' ? 'the fleet' : `${scope} ${target}`;
}

/** The service as the server builds it; `reissue` is the rollout engine's, built after it. */
export function configVariablesService(
  db: Database,
  devices: DeviceRepository,
  clock: Clock,
  reissue: ConfigReissue,
): ConfigVariablesService {
  return new ConfigVariablesService(new ConfigVariableRepository(db), devices, clock, reissue);
}
