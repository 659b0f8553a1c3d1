/** Signed artifacts: upload (the body is the raw content), listing, details, and the fleet's public key. */
import semver from 'semver';
import { z } from 'zod';
import { ARTIFACT_KINDS, artifactManifestSchema } from '../manifest.ts';
import { named, pageFields, pageLimit, pageOffset } from './shared.ts';

/** Artifact names: also the names consoles are stored under. */
export const artifactName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, 'names are lower-case letters, digits, . _ -');
export const artifactVersion = z
  .string()
  .refine((value) => semver.valid(value) === value, 'must be a semantic version such as 1.2.0');

/** The query of an upload: what the body is, checked against the bytes as they arrive. */
export const artifactUploadQuery = z.strictObject({
  name: artifactName,
  version: artifactVersion,
  kind: z.enum(ARTIFACT_KINDS),
  boards: z
    .string()
    .min(1)
    .describe('comma-separated board ids')
    .transform((value) =>
      [
        ...new Set(
          value
            .split(',')
            .map((board) => board.trim())
            .filter(Boolean),
        ),
      ].sort(),
    )
    .refine((boards) => boards.length > 0, 'name at least one board id'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits'),
  size: z.coerce.number().int().min(0),
});

export const listArtifactsQuery = z.strictObject({
  name: z.string().max(128).optional(),
  kind: z.string().max(32).optional(),
  limit: pageLimit(100),
  offset: pageOffset,
});

/** An artifact: its manifest fields, plus the exact signed manifest text and its ed25519 signature. */
export const artifactSchema = named(
  'Artifact',
  artifactManifestSchema.omit({ schemaVersion: true }).extend({
    id: z.string(),
    manifest: z.string().describe('the signed bytes: canonical JSON of the manifest'),
    signature: z.string().describe('ed25519 signature of `manifest`, base64'),
  }),
);

export const artifactListSchema = named(
  'ArtifactList',
  z.object({ artifacts: z.array(artifactSchema), ...pageFields }),
);

export const fleetKeySchema = named(
  'FleetKey',
  z.object({
    algorithm: z.literal('ed25519'),
    publicKeyPem: z.string(),
  }),
);

export type ArtifactUpload = z.infer<typeof artifactUploadQuery>;
export type ArtifactUploadQuery = z.input<typeof artifactUploadQuery>;
export type ListArtifactsQuery = z.input<typeof listArtifactsQuery>;
export type Artifact = z.infer<typeof artifactSchema>;
export type ArtifactList = z.infer<typeof artifactListSchema>;
export type FleetKey = z.infer<typeof fleetKeySchema>;
