import { mkdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BoardfleetError } from '../../protocol/errors.ts';
import { AppBundleStrategy } from '../update/app-bundle.strategy.ts';
import { UpdateManager } from '../update/update-manager.ts';
import { SystemCollectors } from './collectors.ts';
import {
  type AgentCredentials,
  fetchFleetKey,
  loadCredentials,
  provisionDevice,
  saveCredentials,
} from './credentials.ts';
import { DeviceAgent } from './device-agent.ts';

export const agentConfigSchema = z.strictObject({
  server: z.string().url(),
  mqtt: z.array(z.string().regex(/^mqtts?:\/\//, 'an mqtt:// or mqtts:// URL')).default([]),
  deviceId: z.string().optional(),
  secret: z.string().optional(),
  provisioningToken: z.string().optional(),
  name: z.string().min(1).max(128).default(hostname()),
  board: z.string().min(1).max(64).optional(),
  tags: z.array(z.string()).default([]),
  dataDir: z.string().default('./agent-data'),
  heartbeat: z.coerce.number().min(1).max(3600).default(30),
  keepalive: z.coerce.number().min(1).max(3600).default(30),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;

/** Merges a JSON config file with flags (flags win) and checks it once, listing every bad key. */
export function loadAgentConfig(flags: Record<string, unknown>, configFile?: string): AgentConfig {
  const fromFile = configFile
    ? (JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>)
    : {};
  const merged = {
    ...fromFile,
    ...Object.fromEntries(
      Object.entries(flags).filter(
        ([, value]) => value !== undefined && !(Array.isArray(value) && value.length === 0),
      ),
    ),
  };
  const parsed = agentConfigSchema.safeParse(merged);
  if (!parsed.success) {
    throw new BoardfleetError(
      'invalid-config',
      `invalid agent configuration:\n  ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('\n  ')}`,
    );
  }
  return parsed.data;
}

/** Credentials kept in the data dir, else the ones given, else provisioning with a fleet token. */
export async function obtainCredentials(config: AgentConfig): Promise<AgentCredentials> {
  const dataDir = resolve(config.dataDir);
  const stored = loadCredentials(dataDir);
  if (stored) return stored;
  let credentials: AgentCredentials;
  if (config.deviceId && config.secret) {
    const serverHost = new URL(config.server).hostname;
    credentials = {
      schemaVersion: 1,
      deviceId: config.deviceId,
      secret: config.secret,
      mqttUrl: config.mqtt[0] ?? `mqtt://${serverHost}:1883`,
      fleetPublicKeyPem: await fetchFleetKey(config.server),
    };
  } else if (config.provisioningToken) {
    credentials = await provisionDevice({
      serverUrl: config.server,
      provisioningToken: config.provisioningToken,
      name: config.name,
      ...(config.board ? { board: config.board } : {}),
      tags: config.tags,
    });
  } else {
    throw new BoardfleetError(
      'no-credentials',
      `no credentials in ${dataDir}: pass --device-id and --secret, or --provisioning-token`,
    );
  }
  saveCredentials(dataDir, credentials);
  return credentials;
}

export async function runAgent(config: AgentConfig, logger: Logger): Promise<DeviceAgent> {
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const credentials = await obtainCredentials(config);
  const version = (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
  let agent: DeviceAgent | null = null;
  const updates = new UpdateManager({
    dataDir,
    serverUrl: config.server,
    auth: { deviceId: credentials.deviceId, secret: credentials.secret },
    fleetPublicKeyPem: credentials.fleetPublicKeyPem,
    strategies: {
      'app-bundle': new AppBundleStrategy(resolve(dataDir, 'app'), (line) =>
        logger.info({ app: true }, line),
      ),
    },
    report: ({ deploymentId, state, progress, reason }) =>
      agent?.recordEvent(
        'deployment',
        { state, ...(progress !== undefined ? { progress } : {}) },
        { deploymentId, ...(reason ? { message: reason } : {}) },
      ),
    logger: logger.child({ component: 'updates' }),
  });
  agent = new DeviceAgent({
    deviceId: credentials.deviceId,
    secret: credentials.secret,
    mqttUrls: config.mqtt.length > 0 ? config.mqtt : [credentials.mqttUrl],
    dataDir,
    heartbeatSeconds: config.heartbeat,
    keepaliveSeconds: config.keepalive,
    collectors: new SystemCollectors(dataDir, version, config.board ?? null),
    logger,
    updates,
  });
  await updates.start();
  agent.start();
  return agent;
}
