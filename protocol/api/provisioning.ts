/** Fleet provisioning: tokens that let agents register themselves, and the registration itself. */
import { z } from 'zod';
import { certificateRequestPem, deviceCertificatePem } from '../schemas.ts';
import { newDeviceFields } from './devices.ts';
import { named, timestamp } from './shared.ts';
import { expiresInField } from './token-expiry.ts';

/**
 * A provisioning token may fix the board and tags of every device it registers: the agent holding
 * it may repeat them but not choose others (see `provision`).
 */
export const createProvisioningTokenBody = named(
  'CreateProvisioningToken',
  z.strictObject({
    name: z.string().min(1).max(128).default('fleet'),
    expiresIn: expiresInField,
    maxUses: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .optional()
      .describe('how many devices it may register; default: no limit'),
    board: newDeviceFields.board.describe('the board every device it registers gets'),
    tags: newDeviceFields.tags.describe('the tags every device it registers gets, and no others'),
  }),
);

/**
 * A provisioning token carries the fleet CA's fingerprint after its secret:
 * `bfp_<secret>.<sha256 of the CA certificate, hex>`. The agent holding it trusts exactly that CA
 * from its first connection; the server checks only the secret.
 */
export function pinnedProvisioningToken(secret: string, caFingerprint: string): string {
  return `${secret}.${caFingerprint}`;
}

export function splitProvisioningToken(token: string): { secret: string; caFingerprint: string | null } {
  const dot = token.indexOf('.');
  if (dot === -1) return { secret: token, caFingerprint: null };
  return { secret: token.slice(0, dot), caFingerprint: token.slice(dot + 1).toLowerCase() };
}

/** A new provisioning token: the secret is shown this once. */
export const createdProvisioningTokenSchema = named(
  'CreatedProvisioningToken',
  z.object({
    id: z.string(),
    token: z
      .string()
      .describe("bfp_<secret>.<sha256 of the fleet CA>: the agent pins the fleet's CA with it"),
    caFingerprint: z.string().describe('sha256 of the fleet CA certificate (hex)'),
    serverUrl: z.string().describe('the HTTPS address agents should be given, as the server knows it'),
    expiresAt: timestamp.nullable(),
    maxUses: z.number().int().nullable(),
    board: z.string().nullable(),
    tags: z.array(z.string()).nullable(),
  }),
);

/**
 * An agent registers with the same fields an operator creates a device with. Where its token fixes
 * the board or the tags, the request may leave them out or repeat them; anything else is refused.
 * A name another device already has gets a suffix (`-2`, `-3`…) rather than a refusal: devices
 * booting the same image all ask for the image's hostname.
 */
export const provisionBody = named(
  'Provision',
  z.strictObject({
    ...newDeviceFields,
    csr: certificateRequestPem
      .optional()
      .describe(
        'PKCS#10 request (PEM) for a key the device made and keeps, any subject (the device has no id yet); needed when the fleet requires device certificates',
      ),
  }),
);

/** What an agent needs to connect: its credentials, where the broker is, and the key manifests are signed with. */
export const provisionedDeviceSchema = named(
  'ProvisionedDevice',
  z.object({
    deviceId: z.string(),
    secret: z.string(),
    mqttUrl: z.string(),
    fleetPublicKeyPem: z.string(),
    certificatePem: deviceCertificatePem
      .optional()
      .describe("the device's client certificate for the key of `csr`, when the fleet requires them"),
  }),
);

/**
 * Where agents reach the broker, as provisioning answers it. An agent given its id and secret
 * asks on every start (unless `--mqtt` names the broker), so it follows a broker that moved.
 */
export const mqttEndpointSchema = named(
  'MqttEndpoint',
  z.object({
    mqttUrl: z.string().describe('mqtt:// or mqtts:// URL of the broker, for the host the agent used'),
  }),
);

export type CreateProvisioningToken = z.input<typeof createProvisioningTokenBody>;
export type CreatedProvisioningToken = z.infer<typeof createdProvisioningTokenSchema>;
export type Provision = z.infer<typeof provisionBody>;
export type ProvisionedDevice = z.infer<typeof provisionedDeviceSchema>;
export type MqttEndpointAnswer = z.infer<typeof mqttEndpointSchema>;
