import type { DeploymentStep } from './deployment-parts.ts';
import { retryTransient } from './artifact-download.ts';
import { transferArtifact } from './artifact-transfer.ts';
import { verifySignedManifest } from './artifact-verify.ts';
import type { SignedChunkIndex } from './fleet-metadata.ts';
import type { UpdateManagerOptions } from './update-manager.ts';
import { fileSeed, type KeptSeeds, type SeedSource } from './update-seeds.ts';
import type { UpdateStrategy } from './update-strategy.ts';
import type { Transfer } from '../../protocol/schemas.ts';

/** What downloading a part needs from the update manager. */
export type PartDownloadContext = Pick<
  UpdateManagerOptions,
  | 'serverUrl'
  | 'fetch'
  | 'auth'
  | 'fleetPublicKeyPem'
  | 'signedTargets'
  | 'logger'
  | 'onAssemblyStep'
  | 'report'
> & { downloads: string; kept: KeptSeeds; signal: AbortSignal };

/** A part to fetch, the strategy that installs it, and the version of it the device runs (for downgrades). */
export interface PartToDownload {
  part: DeploymentStep;
  strategy: UpdateStrategy;
  runningVersion: string | null;
  /** The sha256 of the deployment's other parts, whose downloads must stay. */
  siblings: readonly string[];
}

/**
 * Fetches one part (resumable, as a delta where it can), checked against the fleet's signed
 * metadata first; progress is reported for the whole deployment, `share` saying which slice.
 */
export async function downloadPart(
  context: PartDownloadContext,
  { part, strategy, runningVersion, siblings }: PartToDownload,
  share: { index: number; of: number },
): Promise<Transfer> {
  const { signal } = context;
  verifySignedManifest(part, context.fleetPublicKeyPem);
  let signedChunkIndex: SignedChunkIndex | null | undefined;
  await retryTransient(
    signal,
    async () => (signedChunkIndex = await checkSignedTarget(context, part, runningVersion)),
  );
  let lastDecile = -1;
  return transferArtifact({
    deployment: part,
    serverUrl: context.serverUrl,
    ...(context.fetch ? { fetch: context.fetch } : {}),
    auth: context.auth,
    fleetPublicKeyPem: context.fleetPublicKeyPem,
    downloads: context.downloads,
    siblings,
    seeds: await seedsOf(context.kept, strategy),
    baseIndex: context.kept.baseIndex(strategy.kind),
    ...(signedChunkIndex === undefined ? {} : { signedChunkIndex }),
    signal,
    logger: context.logger,
    ...(context.onAssemblyStep ? { onAssemblyStep: context.onAssemblyStep } : {}),
    onProgress: (received, total) => {
      // 100 % is said once, with how the artifacts came.
      const decile = Math.min(9, Math.floor(((share.index + received / total) / share.of) * 10));
      if (decile !== lastDecile) {
        lastDecile = decile;
        context.report({ deploymentId: part.id, state: 'downloading', progress: decile * 10 });
      }
    },
  });
}

/**
 * What a delta of this strategy's next version can be assembled from: its own seeds, or the
 * artifact kept at its last commit; when there is nothing, why.
 */
async function seedsOf(
  kept: KeptSeeds,
  strategy: UpdateStrategy,
): Promise<{ sources: SeedSource[]; none: string }> {
  const none = `no seed: nothing on this device to assemble the ${strategy.kind} update from`;
  if (!strategy.seeds) return { sources: fileSeed(kept.artifactPath(strategy.kind)), none };
  try {
    return { sources: await strategy.seeds(), none };
  } catch (error) {
    return { sources: [], none: `no seed: ${(error as Error).message}` };
  }
}

/**
 * Before a byte is downloaded: the fleet's targets metadata signs this part as it is (when the
 * device trusts a TUF root; until then the signed manifest is the check), and a downgrade only
 * with its signed rollback order. Returns the chunk index targets signs for it (null: none),
 * undefined without TUF; its cost is logged.
 */
async function checkSignedTarget(
  context: PartDownloadContext,
  part: DeploymentStep,
  runningVersion: string | null,
): Promise<SignedChunkIndex | null | undefined> {
  const metadata = context.signedTargets;
  if (!metadata || !(await metadata.hasTrustedRoot())) return undefined;
  const cost = await metadata.check(part, runningVersion, part.rollbackOrder ?? null);
  context.logger.info(
    { deploymentId: part.id, metadataBytes: cost.bytes, metadataMs: Math.round(cost.milliseconds) },
    `${part.artifact} ${part.version} is signed by the fleet's targets metadata`,
  );
  return cost.chunkIndex;
}

/** How a deployment's artifacts came, together: a delta when any part came as one. */
export function combinedTransfer(transfers: readonly Transfer[]): Transfer {
  if (transfers.length === 1) return transfers[0]!;
  const fallback = transfers.flatMap((transfer) => transfer.fallback ?? []).join('; ');
  return {
    mode: transfers.some((transfer) => transfer.mode === 'delta') ? 'delta' : 'full',
    bytes: transfers.reduce((sum, transfer) => sum + transfer.bytes, 0),
    artifactBytes: transfers.reduce((sum, transfer) => sum + transfer.artifactBytes, 0),
    ...(fallback ? { fallback: fallback.slice(0, 512) } : {}),
  };
}
