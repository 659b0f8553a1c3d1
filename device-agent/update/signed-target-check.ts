/**
 * What TUF targets metadata must say before a deployment is installed. Pure: the signed entries
 * come in (already verified by the TUF client), a refusal reason or null goes out.
 */
import semver from 'semver';

/** An artifact's entry in targets.json, as the server writes it. */
export interface SignedArtifact {
  length: number;
  sha256: string;
  name: string;
  version: string;
}

/** A rollback order's entry in targets.json. */
export interface SignedRollbackOrder {
  device: string | null;
  release: string | null;
  from: string;
  to: string;
}

export interface DeploymentToCheck {
  artifact: string;
  version: string;
  sha256: string;
  size: number;
}

export const artifactTargetPath = (name: string, version: string) => `artifacts/${name}/${version}`;
export const rollbackOrderTargetPath = (id: string) => `rollback-orders/${id}`;

/**
 * Null when the deployment is exactly what targets signs and is no downgrade (or a signed order
 * allows this downgrade, for this device or for every device of a release); else why not.
 */
export function refusalOf(input: {
  deployment: DeploymentToCheck;
  signed: SignedArtifact | null;
  deviceId: string;
  runningVersion: string | null;
  rollbackOrder: { id: string; signed: SignedRollbackOrder | null } | null;
}): string | null {
  const { deployment, signed, runningVersion, rollbackOrder } = input;
  const what = `${deployment.artifact} ${deployment.version}`;
  if (!signed)
    return `no signed target for ${what} in the fleet's targets metadata: refusing unsigned software`;
  const mismatched = [
    signed.sha256 !== deployment.sha256 && `sha256 ${signed.sha256}`,
    signed.length !== deployment.size && `length ${signed.length}`,
    signed.name !== deployment.artifact && `name ${signed.name}`,
    signed.version !== deployment.version && `version ${signed.version}`,
  ].filter(Boolean);
  if (mismatched.length > 0)
    return `the signed target for ${what} says ${mismatched.join(', ')}: the deployment does not match it`;
  const older =
    runningVersion !== null &&
    semver.valid(runningVersion) !== null &&
    semver.valid(deployment.version) !== null &&
    semver.lt(deployment.version, runningVersion);
  if (!older) return null;
  if (!rollbackOrder)
    return `refusing ${deployment.version}: it is older than the running ${runningVersion} and no signed rollback order allows it`;
  const order = rollbackOrder.signed;
  if (!order) return `rollback order ${rollbackOrder.id} is not in the fleet's signed targets`;
  if (order.device !== null && order.device !== input.deviceId)
    return `rollback order ${rollbackOrder.id} is for device ${order.device}, not this one`;
  if (order.from !== runningVersion || order.to !== deployment.version)
    return `rollback order ${rollbackOrder.id} allows ${order.from} → ${order.to}, not ${runningVersion} → ${deployment.version}`;
  return null;
}
