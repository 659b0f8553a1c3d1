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

/**
 * Deployable artifacts smaller than this get no chunk index: a delta of them cannot save enough
 * to pay for the index it needs.
 */
export const CHUNKED_ARTIFACT_MIN_BYTES = 256 * 1024;

export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits');

/** How an artifact is cut into chunks for delta updates, and what it shares with its previous version. */
export const artifactChunksSchema = named(
  'ArtifactChunks',
  z.object({
    count: z.number().int().positive(),
    indexSha256: sha256Hex.describe('sha256 of the chunk index, the one its signature covers'),
    averageBytes: z.number().int().positive(),
    newChunks: z.number().int().nonnegative().describe('chunks the store did not hold before this artifact'),
    newBytes: z.number().int().nonnegative().describe('their bytes'),
    previousVersion: z
      .string()
      .nullable()
      .describe('the highest lower version of the same name that has a chunk index; null when none'),
    sharedPercent: z
      .number()
      .min(0)
      .max(100)
      .nullable()
      .describe(
        "share of this artifact's bytes in chunks of `previousVersion` (what a device running it need not fetch), rounded down to 0.1",
      ),
  }),
);

/** An artifact: its manifest fields, plus the exact signed manifest text and its ed25519 signature. */
export const artifactSchema = named(
  'Artifact',
  artifactManifestSchema.omit({ schemaVersion: true }).extend({
    id: z.string(),
    manifest: z.string().describe('the signed bytes: canonical JSON of the manifest'),
    signature: z.string().describe('ed25519 signature of `manifest`, base64'),
    chunks: artifactChunksSchema
      .nullable()
      .describe(
        `its chunk index for delta updates; null when it has none (not deployable, under ${CHUNKED_ARTIFACT_MIN_BYTES / 1024} KiB, stored before delta updates, or BOARDFLEET_DELTA_UPDATES=off)`,
      ),
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
export type ArtifactChunks = z.infer<typeof artifactChunksSchema>;
export type ArtifactList = z.infer<typeof artifactListSchema>;
export type FleetKey = z.infer<typeof fleetKeySchema>;
