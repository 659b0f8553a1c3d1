/**
 * Configuration variables in the REST API: set and unset at the fleet, a tag or a device, list
 * them, and read a device's effective set with where each value comes from. Secret values are
 * write-only: answers say `secret: true` and leave the value out.
 */
import { z } from 'zod';
import { CONFIG_VALUE_MAX_LENGTH } from '../device-config.ts';
import { json, type ApiOperation } from './operation.ts';
import { named, timestamp } from './shared.ts';

export const CONFIG_SCOPES = ['fleet', 'tag', 'device'] as const;
export const configScopeSchema = z.enum(CONFIG_SCOPES);
export type ConfigScope = z.infer<typeof configScopeSchema>;

/** `fleet`, `tag:<tag>` or `device`: where a device's effective value comes from. */
export type ConfigSource = 'fleet' | `tag:${string}` | 'device';

const target = z
  .string()
  .max(128)
  .optional()
  .describe('the tag (scope tag) or the device id (scope device); none for the fleet');

export const setConfigVariableBody = named(
  'SetConfigVariable',
  z.strictObject({
    value: z.string().max(CONFIG_VALUE_MAX_LENGTH),
    secret: z.boolean().optional().describe('write-only: never answered again (default false)'),
    scope: configScopeSchema.default('fleet'),
    target,
  }),
);

export const configVariableQuery = z.strictObject({
  scope: configScopeSchema.optional(),
  target,
});

export const configVariableSchema = named(
  'ConfigVariable',
  z.object({
    name: z.string(),
    scope: configScopeSchema,
    target: z.string().nullable().describe('the tag or device id; null for the fleet'),
    value: z.string().optional().describe('absent when secret'),
    secret: z.boolean(),
    updatedAt: timestamp,
    updatedBy: z.string(),
  }),
);

export const configVariableListSchema = named(
  'ConfigVariableList',
  z.object({
    variables: z.array(configVariableSchema).describe('by scope (fleet, tag, device), target, name'),
  }),
);

export const effectiveVariableSchema = named(
  'EffectiveConfigVariable',
  z.object({
    name: z.string(),
    value: z.string().optional().describe('absent when secret'),
    secret: z.boolean(),
    source: z.string().describe('fleet, tag:<tag> or device: the scope whose value wins'),
  }),
);

export const deviceConfigSchema = named(
  'DeviceConfig',
  z.object({
    deviceId: z.string(),
    variables: z.array(effectiveVariableSchema).describe('by name'),
    hash: z.string().describe('the hash of the effective set, as the device reports it once applied'),
    reportedHash: z
      .string()
      .nullable()
      .describe('the hash the device last reported; null before it reported one'),
    applied: z.boolean().describe('whether the device reported the effective hash'),
  }),
);

export type SetConfigVariable = z.infer<typeof setConfigVariableBody>;
export type ConfigVariableQuery = z.infer<typeof configVariableQuery>;
export type ConfigVariable = z.infer<typeof configVariableSchema>;
export type ConfigVariableList = z.infer<typeof configVariableListSchema>;
export type EffectiveVariable = z.infer<typeof effectiveVariableSchema>;
export type DeviceConfig = z.infer<typeof deviceConfigSchema>;

export const configOperations = {
  listConfigVariables: {
    method: 'get',
    path: '/api/v1/config/variables',
    summary: 'Configuration variables at every scope, or one scope (and target); secret values are left out',
    tag: 'config',
    access: 'viewer',
    status: 200,
    query: configVariableQuery,
    response: json(configVariableListSchema),
  },
  setConfigVariable: {
    method: 'put',
    path: '/api/v1/config/variables/{name}',
    summary:
      'Set a variable at the fleet, a tag or a device (an environment variable name); the devices it changes get a new desired state',
    tag: 'config',
    access: 'operator',
    status: 200,
    body: json(setConfigVariableBody),
    response: json(configVariableSchema),
  },
  unsetConfigVariable: {
    method: 'delete',
    path: '/api/v1/config/variables/{name}',
    summary: 'Remove a variable from one scope (query scope and target; default the fleet)',
    tag: 'config',
    access: 'operator',
    status: 200,
    query: configVariableQuery,
    response: json(configVariableSchema),
  },
  getDeviceConfig: {
    method: 'get',
    path: '/api/v1/devices/{id}/config',
    summary:
      "A device's effective variables (fleet, then its tags A→Z, then the device), each with its source, and whether the device applied them",
    tag: 'config',
    access: 'viewer',
    status: 200,
    response: json(deviceConfigSchema),
  },
} as const satisfies Record<string, ApiOperation>;
