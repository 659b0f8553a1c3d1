import type { DeployableArtifactKind } from '../../protocol/manifest.ts';
import type { DesiredConfig } from '../../protocol/device-config.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { DeviceRecord } from '../devices/device.repository.ts';

export type Deployment = NonNullable<DesiredState['deployment']>;

const STRATEGY_BY_KIND: Record<DeployableArtifactKind, Deployment['strategy']> = {
  'app-bundle': 'app-bundle',
  'mcu-firmware': 'mcu-serial',
  'linux-image': 'linux-ab',
  unikernel: 'vm',
};

const CONTENT_URL = /^\/api\/v1\/artifacts\/([^/]+)\/content$/;

/** The desired deployment that moves a device to an artifact; the URL is relative to the server. */
export function deploymentFromArtifact(artifact: ArtifactRecord, deploymentId: string): Deployment {
  return {
    id: deploymentId,
    strategy: STRATEGY_BY_KIND[artifact.kind as DeployableArtifactKind],
    artifact: artifact.name,
    version: artifact.version,
    sha256: artifact.sha256,
    size: artifact.size,
    url: `/api/v1/artifacts/${artifact.id}/content`,
    manifest: artifact.manifest,
    signature: artifact.signature,
    rollbackOrder: null,
  };
}

/**
 * The rollback order that takes a rollout's devices back to the deployment they ran before: one
 * per rollout and earlier artifact, however many devices it covers (the executor makes sure it
 * is signed before the desired states go out).
 */
export function rollbackOrderId(rolloutId: string, previous: Deployment): string {
  return `${rolloutId}.${previous.sha256.slice(0, 16)}`;
}

/** The artifact a deployment made by `deploymentFromArtifact` points at, or null for none. */
export function artifactIdOf(deployment: DesiredState['deployment']): string | null {
  return deployment?.url.match(CONTENT_URL)?.[1] ?? null;
}

/**
 * The next version of a device's desired state: one above the last, so the agent takes it. It
 * carries the device's configuration variables (none when it has no variable).
 */
export function nextDesired(
  previous: DesiredState | null,
  deployment: DesiredState['deployment'],
  issuedAt: number,
  config?: DesiredConfig,
): DesiredState {
  return { version: (previous?.version ?? 0) + 1, issuedAt, deployment, ...(config ? { config } : {}) };
}

/**
 * The boards a device takes artifacts for: its own, then each attached board (a variant such as
 * `nano:old-bootloader` also as its base board, which is what firmware is built for).
 */
export function deploymentBoards(record: DeviceRecord): string[] {
  const own = record.inventory?.board ?? record.board;
  const attached = (record.inventory?.attachedBoards ?? []).flatMap((attachedBoard) =>
    attachedBoard.board ? [attachedBoard.board, attachedBoard.board.split(':')[0]!] : [],
  );
  return [...new Set([...(own ? [own] : []), ...attached])];
}

/** What a notified device gets: the release's artifact for its board, or why it cannot get one. */
export type Delivery = { artifact: ArtifactRecord } | { failure: string };

export function chooseDelivery(
  record: DeviceRecord | undefined,
  artifactByBoard: ReadonlyMap<string, ArtifactRecord | null>,
  releaseName: string,
): Delivery {
  if (!record || record.revokedAt !== null) return { failure: 'device revoked' };
  const boards = deploymentBoards(record);
  // The device's own board first, then the Arduinos attached to it (mcu-firmware).
  const board = boards.find((candidate) => artifactByBoard.get(candidate)) ?? boards[0] ?? null;
  const artifact = board ? artifactByBoard.get(board) : null;
  if (!artifact)
    return { failure: `release ${releaseName} has no artifact for board ${board ?? '(unknown)'}` };
  return { artifact };
}
