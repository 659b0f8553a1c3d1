/** What targets.json lists: every artifact, its chunk index, and every rollback order. Pure. */
import type { TufTargetFile } from '../../protocol/tuf/metadata.ts';
import { canonicalBytes } from '../../protocol/tuf/signing.ts';
import { chunkIndexTargetPath } from '../../protocol/chunk-index.ts';
import { sha256 } from '../../lib/hash.ts';
import type { ArtifactEntry } from '../artifacts/artifact.repository.ts';
import type { RollbackOrderRecord } from './rollback-order.repository.ts';

/**
 * An artifact's target path. Name and version are unique among artifacts, where the content is
 * not: the same bytes may be published under two versions.
 */
export const artifactTargetPath = (name: string, version: string) => `artifacts/${name}/${version}`;

export const rollbackOrderPath = (id: string) => `rollback-orders/${id}`;

/**
 * A rollback order as a target. It has no file to download: its length and hash are those of
 * the canonical JSON of what it orders, so the entry still has the form every client expects,
 * and `custom` says the same in plain fields.
 */
function rollbackOrderTarget(order: RollbackOrderRecord): TufTargetFile {
  const custom = {
    ...(order.device === null ? {} : { device: order.device }),
    ...(order.release === null ? {} : { release: order.release }),
    from: order.from,
    to: order.to,
    issuedAt: order.issuedAt,
  };
  const bytes = canonicalBytes({ id: order.id, ...custom });
  return { length: bytes.length, hashes: { sha256: sha256(bytes) }, custom };
}

export function wantedTargets(
  artifacts: ArtifactEntry[],
  orders: RollbackOrderRecord[],
): Record<string, TufTargetFile> {
  const targets: Record<string, TufTargetFile> = {};
  for (const artifact of artifacts)
    targets[artifactTargetPath(artifact.name, artifact.version)] = {
      length: artifact.size,
      hashes: { sha256: artifact.sha256 },
      custom: {
        name: artifact.name,
        version: artifact.version,
        boards: artifact.boards,
        kind: artifact.kind,
      },
    };
  for (const { name, version, sha256: artifactSha256, chunkIndex } of artifacts)
    if (chunkIndex)
      targets[chunkIndexTargetPath(name, version)] = {
        length: chunkIndex.size,
        hashes: { sha256: chunkIndex.sha256 },
        custom: { artifactSha256 },
      };
  for (const order of orders) targets[rollbackOrderPath(order.id)] = rollbackOrderTarget(order);
  return targets;
}
