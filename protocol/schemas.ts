import { z } from 'zod';
import { desiredConfigSchema } from './device-config.ts';
import { logBatchSchema, logWatchSchema } from './device-logs.ts';
import { shellInputSchema, shellOutputSchema } from './device-shell.ts';

const timestamp = z.number().int().nonnegative().describe('milliseconds since the Unix epoch');

export const presenceSchema = z.strictObject({
  state: z.enum(['online', 'offline']),
  /** Why a device went offline: a clean shutdown, or the broker's last-will after a lost connection. */
  reason: z.enum(['started', 'shutdown', 'connection-lost']),
  at: timestamp,
  agentVersion: z.string().max(64).optional(),
});

const slotSchema = z.strictObject({
  name: z.string().min(1).max(64),
  artifact: z.string().max(128).nullable(),
  version: z.string().max(64).nullable(),
  active: z.boolean(),
});

const attachedBoardSchema = z.strictObject({
  port: z.string().max(256),
  board: z.string().max(64).nullable(),
  firmware: z.string().max(128).nullable(),
  firmwareVersion: z.string().max(64).nullable(),
});

export const inventorySchema = z.strictObject({
  board: z.string().min(1).max(64),
  os: z.string().max(256),
  kernel: z.string().max(128),
  architecture: z.string().max(32),
  agentVersion: z.string().max(64),
  hostname: z.string().max(256),
  slots: z.array(slotSchema).max(16),
  attachedBoards: z.array(attachedBoardSchema).max(32),
  /** The hash of the configuration variables the agent applied (`configHash` in device-config.ts). */
  configHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  at: timestamp,
});

export const healthSchema = z.strictObject({
  at: timestamp,
  uptimeSeconds: z.number().nonnegative(),
  load: z.tuple([z.number().nonnegative(), z.number().nonnegative(), z.number().nonnegative()]),
  memory: z.strictObject({ totalBytes: z.number().nonnegative(), availableBytes: z.number().nonnegative() }),
  disk: z.strictObject({ totalBytes: z.number().nonnegative(), freeBytes: z.number().nonnegative() }),
  /** Null where the kernel exposes no thermal zone (virtual machines, most containers). */
  cpuTemperatureCelsius: z.number().min(-100).max(200).nullable(),
  agentRssBytes: z.number().nonnegative(),
});

/**
 * The words an agent reports about a deployment (`events`, `type: 'deployment'`, `data.state`),
 * named so the code says which "committed" it means: the device's own commit after its health
 * check is `CommittedOnDevice`, sent as `installed`; the server counts the device committed for
 * the rollout only once it also passes the server's soak (the rollout engine's own `committed`).
 */
export const DeploymentReport = {
  Downloading: 'downloading',
  /** Verifying or installing; also sent while an activation is held back (the reason says why). */
  Installing: 'installing',
  AwaitingReboot: 'awaiting-reboot',
  /** Installed, healthy and committed on the device: the server's soak starts now. */
  CommittedOnDevice: 'installed',
  /** Nothing changed on the device, or a rollback could not bring the old version back. */
  Failed: 'failed',
  RolledBack: 'rolled-back',
} as const;
export const deploymentReportSchema = z.enum(DeploymentReport);
export type DeploymentReport = z.infer<typeof deploymentReportSchema>;

/** The `type` of the events that report a deployment's progress. */
export const DEPLOYMENT_EVENT_TYPE = 'deployment';

/**
 * How a deployment's artifact reached the device: `delta` (assembled from what the device had,
 * fetching only missing chunks) or `full`. `bytes` is what crossed the network for it (chunk
 * index and chunks, or the whole artifact); `artifactBytes` the artifact's size; `fallback` says
 * why a delta was not used or given up.
 */
export const transferSchema = z.strictObject({
  mode: z.enum(['full', 'delta']),
  bytes: z.number().int().nonnegative(),
  artifactBytes: z.number().int().nonnegative(),
  fallback: z.string().max(512).optional(),
});
export type Transfer = z.infer<typeof transferSchema>;

/** The `data` of a deployment event; other keys are kept for agents that send more. */
export const deploymentEventDataSchema = z.looseObject({
  state: deploymentReportSchema,
  /** Download progress, in percent. */
  progress: z.number().min(0).max(100).optional(),
  /** Sent once the artifact is downloaded: how it came and what it cost (see {@link transferSchema}). */
  transfer: transferSchema.optional(),
});

export type DeploymentEventData = z.infer<typeof deploymentEventDataSchema>;

/**
 * Something that happened on the device; `id` makes redelivery harmless (stored once). A
 * `deployment` event must carry one of the report words; other types carry any data.
 */
export const deviceEventSchema = z
  .strictObject({
    id: z.string().min(1).max(64),
    at: timestamp,
    type: z.string().min(1).max(64),
    deploymentId: z.string().max(64).optional(),
    message: z.string().max(2048).optional(),
    data: z.record(z.string(), z.unknown()).optional(),
  })
  .superRefine((event, context) => {
    if (event.type !== DEPLOYMENT_EVENT_TYPE) return;
    const data = deploymentEventDataSchema.safeParse(event.data);
    for (const issue of data.success ? [] : data.error.issues)
      context.addIssue({ code: 'custom', path: ['data', ...issue.path], message: issue.message });
  });

/** The deployment report an event carries, or null when it is not a (valid) deployment event. */
export function deploymentReportOf(event: DeviceEvent): DeploymentEventData | null {
  if (event.type !== DEPLOYMENT_EVENT_TYPE) return null;
  const data = deploymentEventDataSchema.safeParse(event.data);
  return data.success ? data.data : null;
}

/**
 * The versioned state the server wants a device to run; retained, so a device that reconnects
 * reads the newest one. The agent ignores a version lower than the one it already reconciled.
 */
/** One artifact a deployment installs, and how. */
const deploymentPartFields = {
  strategy: z.enum(['app-bundle', 'linux-ab', 'mcu-serial', 'vm', 'oci']),
  artifact: z.string().max(128),
  version: z.string().max(64),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  url: z.string().max(2048),
  manifest: z.string().max(8192),
  signature: z.string().max(512),
  /**
   * A rollback: the id of the signed order (a target of the fleet's TUF metadata,
   * `rollback-orders/<id>`) that allows this device to go back to an older version; null for
   * any other deployment. The agent takes a downgrade only with such an order, signed.
   */
  rollbackOrder: z.string().min(1).max(200).nullable(),
};

/** The most parts one deployment carries: the device's own artifact and its attached boards' firmware. */
export const MAX_DEPLOYMENT_PARTS = 4;

/** Another artifact of a composite deployment, e.g. the firmware for the board attached to a gateway. */
export const deploymentPartSchema = z.strictObject(deploymentPartFields);
export type DeploymentPart = z.infer<typeof deploymentPartSchema>;

export const desiredStateSchema = z.strictObject({
  version: z.number().int().nonnegative(),
  issuedAt: timestamp,
  deployment: z
    .strictObject({
      id: z.string().min(1).max(64),
      ...deploymentPartFields,
      /**
       * A composite release (a gateway's app and its attached board's firmware): the other parts,
       * installed, health-checked and committed together with this one, and rolled back together
       * when any of them fails. Absent for a deployment of one artifact.
       */
      parts: z
        .array(deploymentPartSchema)
        .min(1)
        .max(MAX_DEPLOYMENT_PARTS - 1)
        .optional(),
    })
    .nullable(),
  /** The effective configuration variables; absent from a server that sets none. */
  config: desiredConfigSchema.optional(),
});

/** One-off instructions, idempotent by id: a repeated command id is acknowledged, not re-run. */
export const commandSchema = z.strictObject({
  id: z.string().min(1).max(64),
  issuedAt: timestamp,
  type: z.enum(['ping', 'report']),
  args: z.record(z.string(), z.unknown()).optional(),
});

/** One PEM block of at most `maxLength` characters: its armour is checked here, its contents by the reader. */
const pemBlock = (label: string, maxLength: number) =>
  z
    .string()
    .max(maxLength)
    .regex(new RegExp(`^-----BEGIN ${label}-----\\r?\\n[^-]+-----END ${label}-----\\r?\\n?$`));

/** A PKCS#10 certificate request (PEM) for a key the device made and keeps. */
export const certificateRequestPem = pemBlock('CERTIFICATE REQUEST', 4096);
/** A device certificate (PEM) issued by the fleet CA. */
export const deviceCertificatePem = pemBlock('CERTIFICATE', 8192);

/**
 * A device asks for a new certificate for the key it already has (device → server; the request's
 * subject CN is its device id). The server answers on `certificate`.
 */
export const certificateRequestSchema = z.strictObject({ csr: certificateRequestPem, at: timestamp });

/** A device certificate for the key of the device's request (server → device). */
export const deviceCertificateSchema = z.strictObject({
  certificatePem: deviceCertificatePem,
  issuedAt: timestamp,
});

/**
 * What the server's retained hello carries. Loose, unlike the other payloads: an agent must
 * recognise the hello of a newer server that added fields.
 */
export const serverHelloSchema = z.looseObject({
  protocolVersion: z.number().int().positive(),
  at: timestamp,
});

export type Presence = z.infer<typeof presenceSchema>;
export type Inventory = z.infer<typeof inventorySchema>;
export type Health = z.infer<typeof healthSchema>;
export type DeviceEvent = z.infer<typeof deviceEventSchema>;
export type DesiredState = z.infer<typeof desiredStateSchema>;
export type Command = z.infer<typeof commandSchema>;
export type ServerHello = z.infer<typeof serverHelloSchema>;
export type CertificateRequest = z.infer<typeof certificateRequestSchema>;
export type DeviceCertificate = z.infer<typeof deviceCertificateSchema>;

export const channelSchemas = {
  presence: presenceSchema,
  inventory: inventorySchema,
  health: healthSchema,
  events: deviceEventSchema,
  desired: desiredStateSchema,
  commands: commandSchema,
  'certificate-request': certificateRequestSchema,
  certificate: deviceCertificateSchema,
  logs: logBatchSchema,
  'log-watch': logWatchSchema,
  'shell-input': shellInputSchema,
  'shell-output': shellOutputSchema,
  hello: serverHelloSchema,
} as const;

export type ChannelPayload = {
  [K in keyof typeof channelSchemas]: z.infer<(typeof channelSchemas)[K]>;
};
