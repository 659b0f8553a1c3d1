import { sha256 } from '../../lib/hash.ts';
import type { DesiredState } from '../../protocol/schemas.ts';
import type { ArtifactRecord } from '../../server/artifacts/artifact.repository.ts';
import { RolloutRepository } from '../../server/rollouts/rollout.repository.ts';
import type { TestServer } from './test-server.ts';

/** Uploads bytes as an artifact through the real REST API and returns the stored record. */
export async function uploadArtifact(
  server: Pick<TestServer, 'httpUrl' | 'adminToken'>,
  content: Buffer,
  meta: { name: string; version: string; boards: string[]; kind?: string },
): Promise<ArtifactRecord> {
  const query = new URLSearchParams({
    name: meta.name,
    version: meta.version,
    kind: meta.kind ?? 'app-bundle',
    boards: meta.boards.join(','),
    sha256: sha256(content),
    size: String(content.length),
  });
  const response = await fetch(`${server.httpUrl}/api/v1/artifacts?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/octet-stream' },
    body: content,
  });
  if (response.status !== 201) throw new Error(`upload failed: ${response.status} ${await response.text()}`);
  return (await response.json()) as ArtifactRecord;
}

type Deployment = NonNullable<DesiredState['deployment']>;

/**
 * Records on the server that `deployment` is the device's desired state, as a rollout would
 * before notifying it: a device may download only the artifacts it was sent. For tests that
 * hand a deployment to an agent's update manager directly.
 */
export async function sendToDevice(
  server: Pick<TestServer, 'db'>,
  deviceId: string,
  deployment: Deployment,
): Promise<Deployment> {
  const rollouts = new RolloutRepository(server.db);
  const version = ((await rollouts.desired(deviceId))?.version ?? 0) + 1;
  await rollouts.saveDesired(deviceId, { version, issuedAt: Date.now(), deployment }, Date.now());
  return deployment;
}
