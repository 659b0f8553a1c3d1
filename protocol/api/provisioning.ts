/** Fleet provisioning: tokens that let agents register themselves, and the registration itself. */
import { z } from 'zod';
import { createDeviceBody } from './devices.ts';
import { named, timestamp } from './shared.ts';

export const createProvisioningTokenBody = named(
  'CreateProvisioningToken',
  z.strictObject({
    name: z.string().min(1).max(128).default('fleet'),
    expiresInHours: z
      .number()
      .positive()
      .max(24 * 365)
      .optional(),
  }),
);

/** A new provisioning token: the secret is shown this once. */
export const createdProvisioningTokenSchema = named(
  'CreatedProvisioningToken',
  z.object({
    id: z.string(),
    token: z.string(),
    expiresAt: timestamp.nullable(),
  }),
);

/** An agent registers with the same fields an operator creates a device with. */
export const provisionBody = createDeviceBody;

/** What an agent needs to connect: its credentials, where the broker is, and the key manifests are signed with. */
export const provisionedDeviceSchema = named(
  'ProvisionedDevice',
  z.object({
    deviceId: z.string(),
    secret: z.string(),
    mqttUrl: z.string(),
    fleetPublicKeyPem: z.string(),
  }),
);

export type CreateProvisioningToken = z.input<typeof createProvisioningTokenBody>;
export type CreatedProvisioningToken = z.infer<typeof createdProvisioningTokenSchema>;
export type Provision = z.infer<typeof provisionBody>;
export type ProvisionedDevice = z.infer<typeof provisionedDeviceSchema>;
