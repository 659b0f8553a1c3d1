import { statSync } from 'node:fs';
import semver from 'semver';
import { BoardfleetError } from '../../protocol/errors.ts';
import type { ArtifactManifest } from '../../protocol/manifest.ts';
import { verifyManifest } from '../../protocol/manifest-signature.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import { sha256File } from '../../lib/hash.ts';

type Deployment = NonNullable<DesiredState['deployment']>;

/**
 * The deployment's manifest is signed by the fleet key and says what the deployment says. Checked
 * before a byte is downloaded (a forged desired state costs no traffic) and again before install.
 */
export function verifySignedManifest(deployment: Deployment, fleetPublicKeyPem: string): ArtifactManifest {
  let manifest: ArtifactManifest | null;
  try {
    manifest = verifyManifest(deployment.manifest, deployment.signature, fleetPublicKeyPem);
  } catch (error) {
    throw new BoardfleetError(
      'bad-signature',
      `the manifest of ${deployment.artifact} ${deployment.version} cannot be verified: ${(error as Error).message}`,
    );
  }
  if (!manifest) {
    throw new BoardfleetError(
      'bad-signature',
      `the manifest signature of ${deployment.artifact} ${deployment.version} does not match the fleet key`,
    );
  }
  const signed = manifest;
  const mismatched: string[] = (['sha256', 'size', 'version'] as const).filter(
    (key) => signed[key] !== deployment[key],
  );
  if (manifest.name !== deployment.artifact) mismatched.push('name');
  if (mismatched.length > 0) {
    throw new BoardfleetError(
      'manifest-mismatch',
      `the signed manifest disagrees with the deployment on ${mismatched.join(', ')}`,
    );
  }
  return manifest;
}

/**
 * Checks a deployment before anything is installed: the signed manifest (above); the downloaded
 * bytes match its sha256 and size; and the version is not older than what runs unless the server
 * asked for a rollback.
 */
export async function verifyDeployment(options: {
  deployment: Deployment;
  fleetPublicKeyPem: string;
  downloadedPath: string;
  runningVersion: string | null;
}): Promise<ArtifactManifest> {
  const { deployment } = options;
  const manifest = verifySignedManifest(deployment, options.fleetPublicKeyPem);
  const size = statSync(options.downloadedPath).size;
  if (size !== manifest.size) {
    throw new BoardfleetError(
      'bad-size',
      `the downloaded ${deployment.artifact} has ${size} bytes, the signed manifest says ${manifest.size}`,
    );
  }
  const actual = await sha256File(options.downloadedPath);
  if (actual !== manifest.sha256) {
    throw new BoardfleetError(
      'bad-sha256',
      `the downloaded ${deployment.artifact} has sha256 ${actual}, the signed manifest says ${manifest.sha256}`,
    );
  }
  if (
    options.runningVersion &&
    semver.valid(options.runningVersion) &&
    semver.lt(manifest.version, options.runningVersion) &&
    // Falsy, not null: a deployment an older agent saved has no rollbackOrder at all.
    !deployment.rollbackOrder
  ) {
    throw new BoardfleetError(
      'downgrade-refused',
      `refusing ${manifest.version}: it is older than the running ${options.runningVersion} and the server did not ask for a rollback`,
    );
  }
  return manifest;
}
