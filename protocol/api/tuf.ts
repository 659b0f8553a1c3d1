/**
 * The fleet's TUF repository: the public metadata files, and what operators do with its keys
 * (publish a root signed offline, rotate an online key, issue a rollback order).
 */
import { z } from 'zod';
import {
  METADATA_FILE_NAMES,
  ONLINE_ROLES,
  tufKeySchema,
  tufMetadataSchema,
  tufRootSchema,
  tufTimeSchema,
} from '../tuf/metadata.ts';
import { artifactVersion } from './artifacts.ts';
import { named, timestamp } from './shared.ts';

export const tufMetadataParams = z.strictObject({
  file: z.string().max(64).describe(`the metadata file: ${METADATA_FILE_NAMES}`),
});

export const tufMetadataDocument = named(
  'TufMetadata',
  tufMetadataSchema.describe('a signed TUF document, byte for byte as the snapshot and timestamp hash it'),
);

export const tufRootDocument = named(
  'TufRoot',
  tufRootSchema.describe('a root: what it says (`signed`) and the signatures over its canonical JSON'),
);

export const onlineKeySchema = named(
  'TufOnlineKey',
  z.object({
    keyId: z.string(),
    key: tufKeySchema,
    createdAt: timestamp,
  }),
);

const onlineRoleKeys = z.object({
  active: onlineKeySchema.describe(
    'the key the current root names; before the first root, the one it must name',
  ),
  pending: onlineKeySchema
    .nullable()
    .describe('a key made by a rotation, to be named by the next root; it signs from then on'),
});

const publishedDocument = z
  .object({ version: z.number().int(), expires: tufTimeSchema })
  .nullable()
  .describe('the newest version, null until the first root is published');

export const tufStatusSchema = named(
  'TufStatus',
  z.object({
    root: tufRootDocument.nullable().describe('the current root; null until an operator publishes the first'),
    onlineKeys: z.object({ targets: onlineRoleKeys, snapshot: onlineRoleKeys, timestamp: onlineRoleKeys }),
    published: z.object({
      targets: publishedDocument,
      snapshot: publishedDocument,
      timestamp: publishedDocument,
    }),
  }),
);

export const rotateOnlineKeyBody = named(
  'RotateOnlineKey',
  z.strictObject({ role: z.enum(ONLINE_ROLES).describe('the online role whose key to replace') }),
);

export const rotatedOnlineKeySchema = named(
  'RotatedOnlineKey',
  z.object({
    role: z.enum(ONLINE_ROLES),
    pending: onlineKeySchema,
    created: z.boolean().describe('false when the role already had a pending key: that one is answered'),
  }),
);

export const createRollbackOrderBody = named(
  'CreateRollbackOrder',
  z
    .strictObject({
      device: z.string().min(1).max(128).optional().describe('the device to roll back, by id'),
      release: z.string().min(1).max(128).optional().describe('or every device of a release, by name or id'),
      from: artifactVersion.describe('the version to leave'),
      to: artifactVersion.describe('the older version to go back to'),
    })
    .refine((order) => (order.device === undefined) !== (order.release === undefined), {
      error: 'name either a device or a release',
    }),
);

export const rollbackOrderSchema = named(
  'RollbackOrder',
  z.object({
    id: z.string(),
    path: z.string().describe('its target path in targets.json: rollback-orders/<id>'),
    device: z.string().nullable(),
    release: z.string().nullable(),
    from: z.string(),
    to: z.string(),
    issuedAt: timestamp,
    targetsVersion: z.number().int().describe('the version of targets.json that first lists it'),
  }),
);

export type TufOnlineKey = z.infer<typeof onlineKeySchema>;
export type TufStatus = z.infer<typeof tufStatusSchema>;
export type RotateOnlineKey = z.infer<typeof rotateOnlineKeyBody>;
export type RotatedOnlineKey = z.infer<typeof rotatedOnlineKeySchema>;
export type CreateRollbackOrder = z.infer<typeof createRollbackOrderBody>;
export type RollbackOrder = z.infer<typeof rollbackOrderSchema>;
