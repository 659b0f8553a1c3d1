import type { DeployableArtifactKind } from '../../protocol/manifest.ts';
import type { DesiredConfig } from '../../protocol/device-config.ts';
import type { DeploymentPart, DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../artifacts/artifact.repository.ts';
import type { DeviceRecord } from '../devices/device.repository.ts';

export type Deployment = NonNullable<DesiredState['deployment']>;

const STRATEGY_BY_KIND: Record<DeployableArtifactKind, Deployment['strategy']> = {
  'app-bundle': 'app-bundle',
  'mcu-firmware': 'mcu-serial',
  'linux-image': 'linux-ab',
  unikernel: 'vm',
  'oci-image': 'oci',
};

const CONTENT_URL = /^\/api\/v1\/artifacts\/([^/]+)\/content$/;

/** One artifact as a deployment installs it; the URL is relative to the server. */
function partFromArtifact(artifact: ArtifactRecord): DeploymentPart {
  return {
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
 * The desired deployment that moves a device to an artifact, and with a composite release to its
 * other parts (the attached boards' firmware) at the same time.
 */
export function deploymentFromArtifact(
  artifact: ArtifactRecord,
  deploymentId: string,
  parts: readonly ArtifactRecord[] = [],
): Deployment {
  return {
    id: deploymentId,
    ...partFromArtifact(artifact),
    ...(parts.length > 0 ? { parts: parts.map(partFromArtifact) } : {}),
  };
}

/**
 * The rollback order that takes a rollout's devices back to the deployment they ran before: one
 * per rollout and earlier artifact, however many devices it covers (the executor makes sure it
 * is signed before the desired states go out).
 */
export function rollbackOrderId(rolloutId: string, previous: DeploymentPart): string {
  return `${rolloutId}.${previous.sha256.slice(0, 16)}`;
}

/**
 * The deployment that sends a device back to `previous`, every part of it: each part may be a
 * downgrade, which the agent takes only with the rollout's signed order for that part.
 */
export function rollbackTo(rolloutId: string, previous: Deployment): Deployment {
  const withOrder = <Part extends DeploymentPart>(part: Part): Part => ({
    ...part,
    rollbackOrder: rollbackOrderId(rolloutId, part),
  });
  return { ...withOrder(previous), ...(previous.parts ? { parts: previous.parts.map(withOrder) } : {}) };
}

/** The artifact a deployment made by `deploymentFromArtifact` points at, or null for none. */
export function artifactIdOf(deployment: DeploymentPart | null): string | null {
  return deployment?.url.match(CONTENT_URL)?.[1] ?? null;
}

/** Every artifact a deployment points at: its own and its parts'. */
export function artifactIdsOf(deployment: DesiredState['deployment']): string[] {
  if (!deployment) return [];
  return [deployment, ...(deployment.parts ?? [])].flatMap((part) => artifactIdOf(part) ?? []);
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

/**
 * What a notified device gets: the release's artifact for its board and, when the release also
 * carries firmware for a board attached to it (a composite release), that firmware as a part of
 * the same deployment; or why it cannot get them.
 */
export type Delivery = { artifact: ArtifactRecord; parts: ArtifactRecord[] } | { failure: string };

export function chooseDelivery(
  record: DeviceRecord | undefined,
  artifactByBoard: ReadonlyMap<string, ArtifactRecord | null>,
  release: { name: string; carriesFirmware: boolean },
): Delivery {
  const releaseName = release.name;
  if (!record || record.revokedAt !== null) return { failure: 'device revoked' };
  const own = record.inventory?.board ?? record.board;
  const ownArtifact = own ? artifactByBoard.get(own) : null;
  if (ownArtifact && ownArtifact.kind !== 'mcu-firmware')
    return release.carriesFirmware
      ? composeDelivery(record, ownArtifact, artifactByBoard, releaseName)
      : { artifact: ownArtifact, parts: [] };
  const boards = deploymentBoards(record);
  // No artifact of the device's own: the firmware for an Arduino attached to it (mcu-firmware).
  const board = boards.find((candidate) => artifactByBoard.get(candidate)) ?? boards[0] ?? null;
  const artifact = board ? artifactByBoard.get(board) : null;
  if (!artifact)
    return { failure: `release ${releaseName} has no artifact for board ${board ?? '(unknown)'}` };
  return { artifact, parts: [] };
}

/**
 * A composite release (an app and firmware): the device's own artifact, with the release's
 * firmware for each board attached to it. Every attached board needs its firmware: updating the
 * app alone would leave a board on firmware the new app was not released with. A device with no
 * board attached gets the app alone.
 */
function composeDelivery(
  record: DeviceRecord,
  ownArtifact: ArtifactRecord,
  artifactByBoard: ReadonlyMap<string, ArtifactRecord | null>,
  releaseName: string,
): Delivery {
  const attached = (record.inventory?.attachedBoards ?? []).flatMap((board) =>
    board.board ? [{ port: board.port, board: board.board }] : [],
  );
  const firmwareFor = (board: string) =>
    [artifactByBoard.get(board), artifactByBoard.get(board.split(':')[0]!)].find(
      (artifact) => artifact?.kind === 'mcu-firmware',
    ) ?? null;
  const parts = attached.map((board) => ({ ...board, firmware: firmwareFor(board.board) }));
  if (parts.length === 0) return { artifact: ownArtifact, parts: [] };
  const missing = parts.find((part) => !part.firmware);
  if (missing)
    return {
      failure: `release ${releaseName} has no firmware for the ${missing.board} attached on ${missing.port}`,
    };
  if (ownArtifact.kind === 'linux-image')
    return {
      failure: `release ${releaseName} pairs a linux-image with firmware: an A/B image switch reboots the device, so the two cannot be installed and rolled back together`,
    };
  const firmware = [...new Map(parts.map((part) => [part.firmware!.id, part.firmware!])).values()];
  return { artifact: ownArtifact, parts: firmware };
}
