import { z } from 'zod';

/** What a device installs. */
export const DEPLOYABLE_ARTIFACT_KINDS = [
  'app-bundle',
  'mcu-firmware',
  'linux-image',
  'unikernel',
  'oci-image',
] as const;
/**
 * Every kind the server stores and signs: also an image build's other outputs (the full disk
 * image to write to an SD card, its SBOM and its build log), which no device installs.
 */
export const ARTIFACT_KINDS = [...DEPLOYABLE_ARTIFACT_KINDS, 'disk-image', 'sbom', 'build-log'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];
export type DeployableArtifactKind = (typeof DEPLOYABLE_ARTIFACT_KINDS)[number];

export const isDeployableKind = (kind: ArtifactKind): kind is DeployableArtifactKind =>
  (DEPLOYABLE_ARTIFACT_KINDS as readonly string[]).includes(kind);

/**
 * What the fleet key signs for each artifact. The agent refuses an artifact whose bytes do not
 * match `sha256` and `size`, or whose manifest signature does not verify against the fleet key.
 */
export const artifactManifestSchema = z.strictObject({
  schemaVersion: z.literal(1),
  name: z.string().min(1).max(128),
  version: z.string().min(1).max(64),
  kind: z.enum(ARTIFACT_KINDS),
  boards: z.array(z.string().min(1).max(64)).max(64),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().nonnegative(),
  createdAt: z.number().int().nonnegative(),
});

export type ArtifactManifest = z.infer<typeof artifactManifestSchema>;

/** The signed form: fixed key order, no whitespace, so signer and verifier hash the same bytes. */
export function canonicalManifest(manifest: ArtifactManifest): string {
  const ordered: ArtifactManifest = {
    schemaVersion: manifest.schemaVersion,
    name: manifest.name,
    version: manifest.version,
    kind: manifest.kind,
    boards: [...manifest.boards],
    sha256: manifest.sha256,
    size: manifest.size,
    createdAt: manifest.createdAt,
  };
  return JSON.stringify(ordered);
}
